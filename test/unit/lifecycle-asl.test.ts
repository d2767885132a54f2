import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { beforeAll, describe, expect, it } from "vitest";
import { admissionOutputSchema, lifecycleRequestSchema } from "../../app/lifecycle";

/**
 * The job lifecycle definition: valid ASL, JSONPath only (the local interpreter ignores JSONata
 * and Variables), the state names the local endpoint overrides, only the two integrations the
 * design uses, and the state-transition counts docs/lifecycle.md promises — both by walking the
 * graph and by running it in aws-local-stepfunctions, the interpreter behind the local stack.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type State = Record<string, Json>;
interface Definition {
  StartAt: string;
  States: Record<string, State>;
}

/** asl-validator ships no types; this is the part of its API the test uses. */
type AslValidator = (definition: unknown) => { isValid: boolean; errorsText: (separator?: string) => string };
const aslValidator = createRequire(import.meta.url)("asl-validator") as AslValidator;

const ASL_PATH = new URL("../../state-machines/job-lifecycle.asl.json", import.meta.url);
const DOC_PATH = new URL("../../docs/lifecycle.md", import.meta.url);
const definition = JSON.parse(readFileSync(ASL_PATH, "utf8")) as Definition;

const LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke";
const LAMBDA_WAIT = "arn:aws:states:::lambda:invoke.waitForTaskToken";
const SQS_WAIT = "arn:aws:states:::sqs:sendMessage.waitForTaskToken";
/** The DefinitionSubstitution CDK (and the local stack) fills in: a literal in the definition. */
const FUNCTION_ARN = ["$", "{LifecycleFunctionArn}"].join("");

/** The scheduler's admission, as app/lifecycle.ts#AdmissionOutput defines it. */
const ADMITTED = {
  admitted: true,
  pool: "cpu",
  nodeId: "node-1",
  queueUrl: "http://127.0.0.1:1/queue/cpu-normal",
  attempt: 1,
  timeoutSeconds: 40,
  heartbeatSeconds: 10,
  lostAfterSeconds: 30,
};

/** What a scripted Task does on one visit: return `result`, or fail with `error`. */
type Outcome = { readonly result: Json } | { readonly error: string; readonly cause?: string };
type Script = Record<string, Outcome[]>;

const payload = (value: Json): Outcome => ({ result: { Payload: value } });

/** The scenarios the doc counts, as scripted task outcomes in visit order. */
const SCENARIOS = {
  success: {
    AwaitAdmission: [{ result: ADMITTED }],
    Dispatch: [{ result: { ok: true } }],
    Complete: [payload({ status: "completed", released: 0 })],
  },
  retryThenSuccess: {
    AwaitAdmission: [{ result: ADMITTED }, { result: { ...ADMITTED, attempt: 2 } }],
    Dispatch: [{ error: "ValueError", cause: "boom" }, { result: { ok: true } }],
    AttemptFailed: [payload({ next: "retry", delaySeconds: 2 })],
    Requeue: [payload({ status: "queued" })],
    Complete: [payload({ status: "completed", released: 0 })],
  },
  timedOutThenEnd: {
    AwaitAdmission: [{ result: ADMITTED }],
    Dispatch: [{ error: "States.Timeout" }],
    AttemptFailed: [payload({ next: "end", delaySeconds: 0 })],
  },
  lostThenEnd: {
    AwaitAdmission: [{ result: ADMITTED }],
    Dispatch: [{ error: "States.HeartbeatTimeout" }],
    AttemptFailed: [payload({ next: "end", delaySeconds: 0 })],
  },
  notAdmitted: {
    AwaitAdmission: [{ result: { admitted: false, reason: "job job_1 is cancelled" } }],
  },
} satisfies Record<string, Script>;

/** The numbers docs/lifecycle.md states in "State transitions per job". */
function documentedCounts(): { success: number; perRetry: number } {
  const doc = readFileSync(DOC_PATH, "utf8");
  const success = /successful single-attempt job costs \*\*(\d+) state transitions\*\*/.exec(doc);
  const perRetry = /Each retry adds \*\*(\d+) state transitions\*\*/.exec(doc);
  if (!success?.[1] || !perRetry?.[1]) throw new Error("docs/lifecycle.md no longer states the counts");
  return { success: Number(success[1]), perRetry: Number(perRetry[1]) };
}

describe("job lifecycle definition", () => {
  it("is valid Amazon States Language", () => {
    // A copy: the validator writes defaults (QueryLanguage) into what it is given.
    const { isValid, errorsText } = aslValidator(structuredClone(definition));

    expect(isValid, errorsText("\n")).toBe(true);
  });

  it("has every state the local endpoint and the docs name", () => {
    const names = Object.keys(definition.States);

    expect(definition.StartAt).toBe("AwaitAdmission");
    expect(names).toEqual(
      expect.arrayContaining([
        "AwaitAdmission",
        "Admitted?",
        "Ended",
        "Dispatch",
        "Complete",
        "AttemptFailed",
        "RetryOrEnd",
        "BackoffWait",
        "Requeue",
        "Done",
      ]),
    );
    expect(definition.States.Ended?.Type).toBe("Succeed");
    expect(definition.States.Done?.Type).toBe("Succeed");
    expect(definition.States.BackoffWait).toMatchObject({
      Type: "Wait",
      SecondsPath: "$.decision.delaySeconds",
    });
  });

  it("uses JSONPath only: no JSONata, no Assign or Variables", () => {
    const offending: string[] = [];
    visit(definition as unknown as Json, "$", (path, key, value) => {
      if (["Assign", "Arguments", "Output", "Variables"].includes(key)) offending.push(path);
      if (key === "QueryLanguage" && value !== "JSONPath") offending.push(path);
      if (typeof value === "string" && value.trim().startsWith("{%")) offending.push(path);
    });

    expect(offending).toEqual([]);
  });

  it("reaches AWS only through the lifecycle Lambda and the SQS dispatch", () => {
    const tasks = Object.entries(definition.States).filter(([, state]) => state.Type === "Task");

    expect(Object.fromEntries(tasks.map(([name, state]) => [name, state.Resource]))).toEqual({
      AwaitAdmission: LAMBDA_WAIT,
      Dispatch: SQS_WAIT,
      Complete: LAMBDA_INVOKE,
      AttemptFailed: LAMBDA_INVOKE,
      Requeue: LAMBDA_INVOKE,
    });
    const lambdas = tasks.filter(([name]) => name !== "Dispatch");
    for (const [name, state] of lambdas) {
      expect(state.Parameters, name).toMatchObject({ FunctionName: FUNCTION_ARN });
    }
    expect(
      Object.fromEntries(
        lambdas.map(([name, state]) => [
          name,
          (state.Parameters as { Payload: { action: string } }).Payload.action,
        ]),
      ),
    ).toEqual({
      AwaitAdmission: "await-admission",
      Complete: "complete",
      AttemptFailed: "attempt-failed",
      Requeue: "requeue",
    });
  });

  it("lets no payload or result travel: only ids and the admission go into the execution's state", () => {
    const dispatch = definition.States.Dispatch as State;
    const body = (dispatch.Parameters as { MessageBody: Record<string, string> }).MessageBody;

    expect(Object.keys(body).sort()).toEqual(
      ["attempt.$", "heartbeatSeconds.$", "jobId.$", "runToken.$", "timeoutSeconds.$"].sort(),
    );
    expect(dispatch).toMatchObject({
      TimeoutSecondsPath: "$.admission.timeoutSeconds",
      // The backstop spans the queue wait; the worker beats every third of heartbeatSeconds.
      HeartbeatSecondsPath: "$.admission.lostAfterSeconds",
    });
    expect(definition.States.Complete?.ResultPath).toBeNull();
    expect(definition.States.Requeue?.ResultPath).toBeNull();
    expect(definition.States.AttemptFailed).toMatchObject({
      ResultSelector: { "next.$": "$.Payload.next", "delaySeconds.$": "$.Payload.delaySeconds" },
      ResultPath: "$.decision",
    });
  });

  it("catches a heartbeat lapse or a lost report (the scheduler's, for a silent node) before a timeout, and anything else last", () => {
    const catchers = (definition.States.Dispatch?.Catch ?? []) as { ErrorEquals: string[]; Next: string }[];

    expect(catchers.map((c) => [c.ErrorEquals, c.Next])).toEqual([
      [["States.HeartbeatTimeout", "lost"], "AttemptLost"],
      [["States.Timeout", "timeout"], "AttemptTimedOut"],
      [["States.ALL"], "AttemptErrored"],
    ]);
    for (const [name, outcome] of [
      ["AttemptLost", "lost"],
      ["AttemptTimedOut", "timed_out"],
      ["AttemptErrored", "failed"],
    ] as const) {
      expect(definition.States[name]).toMatchObject({
        Type: "Pass",
        Result: outcome,
        ResultPath: "$.outcome",
        Next: "AttemptFailed",
      });
    }
  });

  it("costs what docs/lifecycle.md says: per successful job and per retry (walking the graph)", () => {
    const documented = documentedCounts();

    const success = walk(definition, SCENARIOS.success);
    const retried = walk(definition, SCENARIOS.retryThenSuccess);

    expect(success).toEqual(["AwaitAdmission", "Admitted?", "Dispatch", "Complete"]);
    expect(success).toHaveLength(documented.success);
    expect(retried.length - success.length).toBe(documented.perRetry);
  });

  it("routes each way an attempt can end to AttemptFailed with its outcome (walking the graph)", () => {
    expect(walk(definition, SCENARIOS.timedOutThenEnd)).toEqual([
      "AwaitAdmission",
      "Admitted?",
      "Dispatch",
      "AttemptTimedOut",
      "AttemptFailed",
      "RetryOrEnd",
      "Done",
    ]);
    expect(walk(definition, SCENARIOS.lostThenEnd)).toContain("AttemptLost");
    expect(walk(definition, SCENARIOS.notAdmitted)).toEqual(["AwaitAdmission", "Admitted?", "Ended"]);
  });
});

describe("job lifecycle in aws-local-stepfunctions", () => {
  let machine: InstanceType<typeof import("aws-local-stepfunctions").StateMachine>;

  beforeAll(async () => {
    // The interpreter uses Promise.withResolvers, which Node 20 lacks.
    const promiseStatics = Promise as unknown as { withResolvers?: () => unknown };
    promiseStatics.withResolvers ??= () => {
      let resolve: unknown;
      let reject: unknown;
      const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    };
    const { StateMachine } = await import("aws-local-stepfunctions");
    machine = new StateMachine(localDefinition() as unknown as ConstructorParameters<typeof StateMachine>[0]);
  });

  /**
   * The interpreter differs from AWS in two ways the local endpoint must also handle: it resolves
   * TimeoutSecondsPath against the task's Parameters instead of the state input, and it gives a
   * Task without TimeoutSeconds 60 s. Both are adjusted here on a copy of the definition.
   */
  function localDefinition(): Definition {
    const local = structuredClone(definition);
    (local.States.Dispatch as State).TimeoutSecondsPath = "$.MessageBody.timeoutSeconds";
    (local.States.AwaitAdmission as State).TimeoutSeconds = 3600;
    return local;
  }

  /** Runs the definition with scripted tasks; returns the states entered and what each task got. */
  async function run(script: Script): Promise<{ entered: string[]; calls: [string, Json][] }> {
    const visits = new Map<string, number>();
    const calls: [string, Json][] = [];
    const handler = (name: string) => async (input: Json) => {
      calls.push([name, input]);
      const visit = visits.get(name) ?? 0;
      visits.set(name, visit + 1);
      const outcome = script[name]?.[visit];
      if (!outcome) throw new Error(`unscripted visit ${visit + 1} of ${name}`);
      if ("error" in outcome) throw Object.assign(new Error(outcome.cause ?? ""), { name: outcome.error });
      return outcome.result;
    };
    const execution = machine.run(
      { jobId: "job_1" },
      {
        context: {
          Execution: { Id: "arn:aws:states:us-east-1:000000000000:execution:jobq-lifecycle:job_1-1" },
          Task: { Token: "token-1" },
        },
        overrides: {
          taskResourceLocalHandlers: Object.fromEntries(
            ["AwaitAdmission", "Dispatch", "Complete", "AttemptFailed", "Requeue"].map((n) => [
              n,
              handler(n),
            ]),
          ),
          waitTimeOverrides: { BackoffWait: 0 },
        },
      },
    );
    const entered: string[] = [];
    const logged = (async () => {
      for await (const event of execution.eventLogs) {
        if (event.type === "StateEntered") entered.push(event.state.name);
      }
    })();
    await execution.result;
    await logged;
    return { entered, calls };
  }

  it("enters the same states the graph walk counts, on success and on a retry", async () => {
    const success = await run(SCENARIOS.success);
    const retried = await run(SCENARIOS.retryThenSuccess);

    expect(success.entered).toEqual(walk(definition, SCENARIOS.success));
    expect(retried.entered).toEqual(walk(definition, SCENARIOS.retryThenSuccess));
  });

  it("hands each step the payload app/lifecycle.ts parses", async () => {
    const { calls } = await run(SCENARIOS.retryThenSuccess);

    expect(calls).toEqual([
      [
        "AwaitAdmission",
        {
          FunctionName: FUNCTION_ARN,
          Payload: {
            action: "await-admission",
            jobId: "job_1",
            taskToken: "token-1",
            executionArn: "arn:aws:states:us-east-1:000000000000:execution:jobq-lifecycle:job_1-1",
          },
        },
      ],
      [
        "Dispatch",
        {
          QueueUrl: ADMITTED.queueUrl,
          MessageBody: {
            jobId: "job_1",
            attempt: 1,
            timeoutSeconds: 40,
            heartbeatSeconds: 10,
            runToken: "token-1",
          },
        },
      ],
      [
        "AttemptFailed",
        {
          FunctionName: FUNCTION_ARN,
          Payload: {
            action: "attempt-failed",
            jobId: "job_1",
            attempt: 1,
            outcome: "failed",
            error: { Error: "ValueError", Cause: "boom" },
          },
        },
      ],
      ["Requeue", { FunctionName: FUNCTION_ARN, Payload: { action: "requeue", jobId: "job_1" } }],
      [
        "AwaitAdmission",
        expect.objectContaining({ Payload: expect.objectContaining({ action: "await-admission" }) }),
      ],
      ["Dispatch", expect.objectContaining({ MessageBody: expect.objectContaining({ attempt: 2 }) })],
      [
        "Complete",
        {
          FunctionName: FUNCTION_ARN,
          Payload: { action: "complete", jobId: "job_1", attempt: 2 },
        },
      ],
    ]);
  });

  it("sends app/lifecycle.ts a payload it accepts at every step, and reads the scheduler's admission", async () => {
    const { calls } = await run(SCENARIOS.retryThenSuccess);
    const lambdaPayloads = calls
      .filter(([name]) => name !== "Dispatch")
      .map(([, input]) => get(input, "$.Payload"));

    for (const payload of lambdaPayloads)
      expect(lifecycleRequestSchema.safeParse(payload).error).toBeUndefined();
    expect(admissionOutputSchema.safeParse(ADMITTED).error).toBeUndefined();
  });

  it("names the outcome of a timeout and of a lost heartbeat", async () => {
    const timedOut = await run(SCENARIOS.timedOutThenEnd);
    const lost = await run(SCENARIOS.lostThenEnd);

    expect(timedOut.calls.at(-1)?.[1]).toMatchObject({ Payload: { outcome: "timed_out" } });
    expect(lost.calls.at(-1)?.[1]).toMatchObject({ Payload: { outcome: "lost" } });
  });
});

/**
 * A walk of the graph with scripted Task outcomes: the JSONPath subset the definition uses
 * (`$.a.b` paths, ResultSelector, ResultPath, Choice on BooleanEquals / StringEquals, Catch by
 * error name). Returns the states entered, in order.
 */
function walk(def: Definition, script: Script, limit = 100): string[] {
  const entered: string[] = [];
  const visits = new Map<string, number>();
  let data: Json = { jobId: "job_1" };
  let name: string | undefined = def.StartAt;
  while (name !== undefined) {
    if (entered.length >= limit) throw new Error(`no end after ${limit} states: ${entered.join(" → ")}`);
    const state: State | undefined = def.States[name];
    if (!state) throw new Error(`no state named ${name}`);
    entered.push(name);
    switch (state.Type) {
      case "Succeed":
      case "Fail":
        return entered;
      case "Pass":
        data = place(data, state.ResultPath, state.Result ?? data);
        break;
      case "Wait":
        break;
      case "Choice": {
        const rules = state.Choices as {
          Variable: string;
          BooleanEquals?: boolean;
          StringEquals?: string;
          Next: string;
        }[];
        const rule = rules.find((r) => {
          const value = get(data, r.Variable);
          return "BooleanEquals" in r ? value === r.BooleanEquals : value === r.StringEquals;
        });
        name = rule ? rule.Next : (state.Default as string);
        continue;
      }
      case "Task": {
        const visit = visits.get(name) ?? 0;
        visits.set(name, visit + 1);
        const outcome: Outcome | undefined = script[name]?.[visit];
        if (!outcome) throw new Error(`unscripted visit ${visit + 1} of ${name}`);
        if ("error" in outcome) {
          const catchers = (state.Catch ?? []) as {
            ErrorEquals: string[];
            ResultPath?: string;
            Next: string;
          }[];
          const catcher: (typeof catchers)[number] | undefined = catchers.find(
            (c) => c.ErrorEquals.includes(outcome.error) || c.ErrorEquals.includes("States.ALL"),
          );
          if (!catcher) throw new Error(`${name} failed with ${outcome.error} and nothing catches it`);
          data = place(data, catcher.ResultPath, { Error: outcome.error, Cause: outcome.cause ?? "" });
          name = catcher.Next;
          continue;
        }
        let result = outcome.result;
        if (state.ResultSelector) result = select(state.ResultSelector as Record<string, Json>, result);
        data = place(data, state.ResultPath, result);
        break;
      }
      default:
        throw new Error(`the walk does not know ${String(state.Type)} states`);
    }
    if (state.End === true) return entered;
    name = state.Next as string | undefined;
  }
  return entered;
}

function get(data: Json, path: string): Json | undefined {
  let at: Json | undefined = data;
  for (const key of path
    .replace(/^\$\.?/, "")
    .split(".")
    .filter(Boolean)) {
    at = at !== null && typeof at === "object" && !Array.isArray(at) ? at[key] : undefined;
  }
  return at;
}

/** ResultPath: null discards, `$` replaces, `$.a.b` sets (absent means `$`). */
function place(data: Json, resultPath: Json | undefined, value: Json): Json {
  if (resultPath === null) return data;
  if (resultPath === undefined || resultPath === "$") return value;
  const keys = String(resultPath).replace(/^\$\./, "").split(".");
  const copy = structuredClone(data) as Record<string, Json>;
  let at = copy;
  keys.slice(0, -1).forEach((key) => {
    const next = at[key];
    at[key] = next !== null && typeof next === "object" && !Array.isArray(next) ? next : {};
    at = at[key] as Record<string, Json>;
  });
  at[keys.at(-1) as string] = value;
  return copy;
}

function select(template: Record<string, Json>, result: Json): Json {
  return Object.fromEntries(
    Object.entries(template).map(([key, value]) =>
      key.endsWith(".$") ? [key.slice(0, -2), get(result, String(value)) ?? null] : [key, value],
    ),
  );
}

function visit(value: Json, path: string, each: (path: string, key: string, value: Json) => void): void {
  if (value === null || typeof value !== "object") return;
  for (const [key, child] of Object.entries(value)) {
    const childPath = `${path}.${key}`;
    each(childPath, key, child);
    visit(child, childPath, each);
  }
}
