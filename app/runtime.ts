import { config } from "../functions/config";
import { createDocumentClient } from "../store/dynamo";
import { JobRepository } from "../store/job-repository";

/**
 * The process-wide dependencies of the use cases, created once per cold start (SDK clients are
 * expensive to create and cheap to share).
 */
let repository: JobRepository | undefined;

export function jobRepository(): JobRepository {
  if (!repository) {
    const c = config();
    repository = new JobRepository(
      createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint }),
      c.jobsTable,
    );
  }
  return repository;
}

/** The use cases' clock; a parameter everywhere so tests and later policies can move it. */
export type Clock = () => Date;
export const systemClock: Clock = () => new Date();

export interface AppContext {
  readonly repo: JobRepository;
  readonly clock: Clock;
  readonly pools: ReturnType<typeof config>["pools"];
  readonly taskTypes: ReturnType<typeof config>["taskTypes"];
}

/** Everything a use case may need, built once per process. */
export function appContext(): AppContext {
  const c = config();
  return { repo: jobRepository(), clock: systemClock, pools: c.pools, taskTypes: c.taskTypes };
}
