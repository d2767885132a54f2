import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { logger } from "../../app/logger";
import type { RouteSpec } from "../../functions/routes";
import type { ApiHandler } from "../../local/api-server";
import { invokeHandler } from "../../local/lambda";
import { startTestApi } from "../support/api";

/**
 * The local stack runs every function's invocations side by side in one process, all logging
 * through the one Powertools logger (app/logger.ts): each log line must still carry the function
 * name and request id of the invocation that wrote it, as it would in AWS.
 */

interface LogLine {
  readonly message: string;
  readonly function_name?: string;
  readonly function_request_id?: string;
  readonly mine?: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The JSON lines the logger writes while `run` runs, by message. */
async function captureLogs(run: () => Promise<unknown>): Promise<Map<string, LogLine>> {
  const lines: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk, ...rest) => {
    const text = String(chunk);
    if (text.startsWith("{")) {
      lines.push(...text.split("\n").filter(Boolean));
      return true;
    }
    return write(chunk, ...(rest as []));
  });
  try {
    await run();
  } finally {
    spy.mockRestore();
  }
  const parsed = lines.map((line) => JSON.parse(line) as LogLine);
  return new Map(parsed.map((line) => [line.message, line]));
}

/**
 * A handler as functions/ writes them (middy, injectLambdaContext on the shared logger) that logs
 * before and after a wait, with a temporary key of its own, so two of them interleave.
 */
function loggingHandler(label: string, waitMs: number) {
  return middy(async (_event: unknown) => {
    logger.appendKeys({ mine: label });
    logger.info(`${label} starts`);
    await sleep(waitMs);
    logger.info(`${label} ends`);
    return { label };
  }).use(injectLambdaContext(logger, { resetKeys: true }));
}

describe("log lines of concurrent local invocations", () => {
  afterEach(() => vi.restoreAllMocks());

  it("carry their own function's name, request id and keys (in-process Lambda invocations)", async () => {
    const logs = await captureLogs(() =>
      Promise.all([
        // A starts first and ends last: B starts, and ends, while A waits.
        invokeHandler(loggingHandler("A", 120), "jobq-local-functionA", {}, "us-east-1"),
        sleep(20).then(() => invokeHandler(loggingHandler("B", 20), "jobq-local-functionB", {}, "us-east-1")),
      ]),
    );

    for (const label of ["A", "B"]) {
      for (const when of ["starts", "ends"]) {
        const line = logs.get(`${label} ${when}`);
        expect(line?.function_name, `${label} ${when}`).toBe(`jobq-local-function${label}`);
        expect(line?.mine, `${label} ${when}`).toBe(label);
      }
    }
    expect(logs.get("A ends")?.function_request_id).toBe(logs.get("A starts")?.function_request_id);
    expect(logs.get("A ends")?.function_request_id).not.toBe(logs.get("B ends")?.function_request_id);
  });

  it("carry their own route's function name (the local API front)", async () => {
    const route = (id: string): RouteSpec => ({
      id,
      method: "GET",
      path: `/${id.toLowerCase()}`,
      handler: id,
      authorized: false,
      jobsTable: [],
    });
    const waits: Record<string, number> = { Slow: 150, Fast: 10 };
    const api = await startTestApi(undefined, {
      routes: [route("Slow"), route("Fast")],
      loadHandler: async (spec) => {
        const handler = loggingHandler(spec.id, waits[spec.id] ?? 0);
        const api: ApiHandler = async (event, context) => {
          await handler(event, context);
          return { statusCode: 200, body: "{}" };
        };
        return api;
      },
    });
    try {
      const logs = await captureLogs(() =>
        Promise.all([api.request("GET", "/slow"), sleep(30).then(() => api.request("GET", "/fast"))]),
      );

      expect(logs.get("Slow starts")?.function_name).toBe("jobq-local-Slow");
      expect(logs.get("Slow ends")?.function_name).toBe("jobq-local-Slow");
      expect(logs.get("Fast ends")?.function_name).toBe("jobq-local-Fast");
      expect(logs.get("Slow ends")?.mine).toBe("Slow");
    } finally {
      await api.close();
    }
  });

  it("outside any invocation carry no function name", async () => {
    const logs = await captureLogs(async () => {
      await invokeHandler(loggingHandler("C", 0), "jobq-local-functionC", {}, "us-east-1");
      logger.info("between invocations");
    });

    expect(logs.get("between invocations")?.function_name).toBeUndefined();
  });
});
