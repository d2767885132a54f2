import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { startAttempt } from "../../app/attempts";
import { reconcile } from "../../app/reconciler";
import { runScheduler } from "../../app/scheduler";
import { handler as lifecycleHandler } from "../../functions/lifecycle";
import { LOCAL_REGION } from "../../local/config";
import { invokeHandler } from "../../local/lambda";
import { type Harness, jobItem, ownTables, startHarness, submitWaiting, suffix } from "../support/scheduling";

/**
 * Every log line on a job's path names the job and the attempt (`jobId`, `attempt`), so one
 * CloudWatch Logs Insights filter finds a job's whole story: the scheduler's dispatch, the
 * lifecycle Lambda's steps (keys appended for the whole invocation), the reconciler's repairs.
 * The lines are the real Powertools JSON lines on stdout.
 */

interface LogLine {
  readonly message: string;
  readonly jobId?: string;
  readonly attempt?: number | null;
  readonly action?: string;
  readonly function_name?: string;
}

/** The JSON log lines written while `work` runs: INFO on stdout, WARN and ERROR on stderr. */
async function captureLogs(work: () => Promise<unknown>): Promise<LogLine[]> {
  const lines: string[] = [];
  const spies = [process.stdout, process.stderr].map((stream) => {
    const write = stream.write.bind(stream);
    return vi.spyOn(stream, "write").mockImplementation((chunk, ...rest) => {
      const text = String(chunk);
      if (text.startsWith("{") && text.includes('"message"')) {
        lines.push(...text.split("\n").filter(Boolean));
        return true;
      }
      return write(chunk, ...(rest as []));
    });
  });
  try {
    await work();
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
  return lines.map((line) => JSON.parse(line) as LogLine);
}

const NODE = { cpu: 4, memoryMb: 8192, gpu: 0 };
const RUN = suffix();
let h: Harness;

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-logkeys-${RUN}-`));
});
afterAll(() => h?.close());

async function scene() {
  const pool = `k${suffix()}`;
  h.addPool({ name: pool, labels: {}, nodes: 1, node: NODE });
  const nodeId = `node-${suffix()}`;
  const node = { pool, nodeId, workerId: `worker-${nodeId}`, capacity: NODE };
  await h.nodes.register(node, h.clock.read());
  return { pool, node };
}

describe("log keys on a job's path", () => {
  it("the scheduler's dispatch and the reconciler's repair name the job and the attempt", async () => {
    const { pool, node } = await scene();
    const [id = ""] = await submitWaiting(h, "keys", [{ pool }]);

    const dispatch = await captureLogs(() => runScheduler(h.scheduler, [pool]));
    await startAttempt(h.reconciler, { jobId: id, attempt: 1, node });
    // Its execution ended with nobody told, and the job is past the reconciler's grace.
    h.sfn.endExecution((await jobItem(h, id)).executionArn ?? "");
    h.clock.advance(600);
    const repair = await captureLogs(() => reconcile(h.reconciler));

    expect(dispatch.find((l) => l.message === "job dispatched")).toMatchObject({ jobId: id, attempt: 1 });
    const ofJob = repair.filter((l) => l.jobId === id);
    // The reconciler starts no execution any more: the scheduler's next admission does.
    expect(ofJob.map((l) => l.message)).toEqual(expect.arrayContaining(["attempt lost with its execution"]));
    for (const line of ofJob) expect(line.attempt, line.message).toBe(1);
  });

  it("the lifecycle Lambda's lines carry the job, the attempt and the step for the whole invocation", async () => {
    // The handler reads the shared tables of the integration environment: its job is made there.
    const tables = inject("tables");
    const shared = await startHarness({
      jobs: tables.Jobs ?? "",
      nodes: tables.Nodes ?? "",
      policy: tables.Policy ?? "",
    });
    try {
      const pool = `k${suffix()}`;
      shared.addPool({ name: pool, labels: {}, nodes: 1, node: NODE });
      const [id = ""] = await submitWaiting(shared, "keys", [{ pool }]);

      // A completion for an attempt that is not running: the step logs why it ignores it.
      const lines = await captureLogs(() =>
        invokeHandler(
          lifecycleHandler,
          "jobq-local-lifecycle",
          { action: "complete", jobId: id, attempt: 2 },
          LOCAL_REGION,
        ),
      );

      const ignored = lines.find((l) => l.message.startsWith("completion of an attempt that is not running"));
      expect(ignored).toMatchObject({
        jobId: id,
        attempt: 2,
        action: "complete",
        function_name: "jobq-local-lifecycle",
      });
    } finally {
      await shared.close();
    }
  });
});
