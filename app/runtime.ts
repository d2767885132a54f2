import { createDocumentClient } from "../store/dynamo";
import { JobRepository } from "../store/job-repository";
import { PolicyRepository } from "../store/policy";
import { UsageRepository } from "../store/usage";
import { config } from "./config";
import { createEventBridgeClient, EventBridgePublisher, type JobEventPublisher } from "./events";
import { createSfnClient, type LifecycleExecutions, StepFunctionsExecutions } from "./executions";

/** The use cases' clock; a parameter everywhere so tests and later policies can move it. */
export type Clock = () => Date;
export const systemClock: Clock = () => new Date();

export interface AppContext {
  readonly repo: JobRepository;
  readonly clock: Clock;
  readonly pools: ReturnType<typeof config>["pools"];
  readonly taskTypes: ReturnType<typeof config>["taskTypes"];
  readonly nodesTable: string;
  /** The stored policy and quota limits (store/policy.ts). */
  readonly policies: PolicyRepository;
  /** The policy in force while none is stored (JOBQ_POLICY, else core's defaults). */
  readonly defaultPolicy: ReturnType<typeof config>["defaultPolicy"];
  /** GPU-seconds used per principal and run-time statistics per job type (store/usage.ts). */
  readonly usage: UsageRepository;
  readonly executions: LifecycleExecutions;
  readonly events: JobEventPublisher;
}

let context: AppContext | undefined;

/**
 * Everything a use case may need, created once per process (SDK clients are expensive to create
 * and cheap to share).
 */
export function appContext(): AppContext {
  if (!context) {
    const c = config();
    const db = createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint });
    context = {
      repo: new JobRepository(db, c.jobsTable, c.retention),
      clock: systemClock,
      pools: c.pools,
      taskTypes: c.taskTypes,
      nodesTable: c.nodesTable,
      policies: new PolicyRepository(db, c.policyTable),
      defaultPolicy: c.defaultPolicy,
      usage: new UsageRepository(db, c.policyTable),
      executions: new StepFunctionsExecutions(
        createSfnClient({ region: c.region, endpoint: c.sfnEndpoint }),
        c.stateMachineArn,
      ),
      events: new EventBridgePublisher(
        createEventBridgeClient({ region: c.region, endpoint: c.eventsEndpoint }),
        c.eventBus,
        c.stateChangeEvents,
      ),
    };
  }
  return context;
}
