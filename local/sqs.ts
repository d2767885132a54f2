import type { AddressInfo } from "node:net";
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { buildApp } from "fauxqs";
import { PRIORITY_NAMES, type PriorityName } from "../core/job";
import type { QueueUrls } from "../functions/config";
import { awsClientOptions } from "../store/aws";

/**
 * The local SQS: fauxqs in process, with one queue per pool × tier (docs/lifecycle.md, "Queues"),
 * each redriving to its own dead-letter queue, as the WorkerPools construct creates them in AWS.
 *
 * fauxqs' own `startFauxqs` always binds every interface (0.0.0.0); the local stack serves on
 * loopback only, so its Fastify app is built with `buildApp` and bound to 127.0.0.1 here.
 * Queue URLs look like `http://sqs.us-east-1.localhost:<port>/000000000000/jobq-cpu-normal`: to a
 * client they are names, since every local SQSClient has the explicit endpoint (store/aws.ts),
 * which the SDK prefers to the URL's host.
 */

export interface LocalSqsOptions {
  /** Pool names: one queue per pool and tier. */
  readonly pools: readonly string[];
  /** @default 0 (a free port) */
  readonly port?: number;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** @default "us-east-1" */
  readonly region?: string;
  /** @default "jobq-" */
  readonly queuePrefix?: string;
  /** Receives of one message before it moves to the DLQ. @default 50, as in AWS */
  readonly maxReceiveCount?: number;
}

export interface LocalSqs {
  /** `http://127.0.0.1:<port>`: the SQSClient's `endpoint`, JOBQ_SQS_ENDPOINT. */
  readonly endpoint: string;
  /** `{pool: {tier: url}}`: JOBQ_QUEUES. */
  readonly queues: QueueUrls;
  /** The dead-letter queue of each pool and tier, same shape. */
  readonly deadLetterQueues: QueueUrls;
  /** Requests answered since start, by action (`SendMessage`, `ReceiveMessage`, …), from every process. */
  requests(): Readonly<Record<string, number>>;
  /** Closes the server; every message is lost (fauxqs keeps nothing). Idempotent. */
  stop(): Promise<void>;
}

export const TIERS = Object.keys(PRIORITY_NAMES) as PriorityName[];

/** `jobq-cpu-normal`, and `jobq-cpu-normal-dlq` for its dead letters. */
export function queueName(prefix: string, pool: string, tier: PriorityName): string {
  return `${prefix}${pool}-${tier}`;
}

export async function startLocalSqs(options: LocalSqsOptions): Promise<LocalSqs> {
  const region = options.region ?? "us-east-1";
  const prefix = options.queuePrefix ?? "jobq-";
  const app = buildApp({ logger: false, defaultRegion: region });
  // SQS bills per request: counted here, so the workers' requests (other processes) are in it.
  const requests: Record<string, number> = {};
  app.addHook("onRequest", async (request: { headers: Record<string, string | string[] | undefined> }) => {
    const target = request.headers["x-amz-target"];
    const action = typeof target === "string" ? (target.split(".").pop() ?? target) : "other";
    requests[action] = (requests[action] ?? 0) + 1;
  });
  await app.listen({ port: options.port ?? 0, host: options.host ?? "127.0.0.1" });
  const { address, port } = app.server.address() as AddressInfo;
  const endpoint = `http://${address.includes(":") ? `[${address}]` : address}:${port}`;

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await app.close();
    })();
    return stopping;
  };

  const client = new SQSClient(awsClientOptions(endpoint, region));
  try {
    const queues: Record<string, Partial<Record<PriorityName, string>>> = {};
    const deadLetterQueues: Record<string, Partial<Record<PriorityName, string>>> = {};
    for (const pool of options.pools) {
      queues[pool] = {};
      deadLetterQueues[pool] = {};
      for (const tier of TIERS) {
        const name = queueName(prefix, pool, tier);
        const dlq = await createQueue(client, `${name}-dlq`, { MessageRetentionPeriod: "1209600" });
        const dlqArn = await queueArn(client, dlq);
        const url = await createQueue(client, name, {
          RedrivePolicy: JSON.stringify({
            deadLetterTargetArn: dlqArn,
            // As in AWS (lib/job-queues.ts): a healthy message may be handed back a few times.
            maxReceiveCount: options.maxReceiveCount ?? 50,
          }),
        });
        queues[pool][tier] = url;
        deadLetterQueues[pool][tier] = dlq;
      }
    }
    return { endpoint, queues, deadLetterQueues, requests: () => ({ ...requests }), stop };
  } catch (error) {
    await stop();
    throw error;
  } finally {
    client.destroy();
  }
}

async function createQueue(
  client: SQSClient,
  name: string,
  attributes: Record<string, string>,
): Promise<string> {
  const out = await client.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  if (!out.QueueUrl) throw new Error(`local sqs: CreateQueue ${name} returned no URL`);
  return out.QueueUrl;
}

async function queueArn(client: SQSClient, url: string): Promise<string> {
  const out = await client.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }),
  );
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new Error(`local sqs: ${url} has no QueueArn`);
  return arn;
}
