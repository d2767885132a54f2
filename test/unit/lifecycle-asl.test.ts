import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { beforeAll, describe, expect, it } from "vitest";
import { dispatchInputSchema, lifecycleRequestSchema, outcomeOf } from "../../app/lifecycle";

/**
 * The job lifecycle definition: valid ASL, JSONPath only (the local interpreter ignores JSONata
 * and Variables), the state names the local endpoint overrides, only the two integrations the
 * design uses, and the state-transition counts docs/lifecycle.md promises — both by walking the
 * graph and by running it in aws-local-stepfunctions, the interpreter behind the local stack.
 * One execution runs one attempt: the scheduler starts it at admission with the DispatchInput.
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
const SQS_WAIT = "arn:aws:states:::sqs:sendMessage.waitForTaskToken";
/** The DefinitionSubstitution CDK (and the local stack) fills in: a literal in the definition. */
const FUNCTION_ARN = ["$", "{LifecycleFunctionArn}"].join("");

/** The scheduler's admission, as app/lifecycle.ts#DispatchInput defines it: the execution's input. */
const DISPATCH_INPUT = {
  jobId: "job_1",
  pool: "cpu",
  nodeId: "node-1",
  queueUrl: "http://127.0.0.1:1/queue/cpu-normal",
  attempt: 1,
  timeoutSeconds: 40,
  heartbeatSeconds: 10,
  lostAfterSeconds: 30,
};

/** The execution the interpreter runs as (`$$.Execution.Id`): `<jobId>-<version>`. */
const EXECUTION_ARN = "arn:aws:states:us-east-1:000000000000:execution:jobq-lifecycle:job_1-3";

/** What a scripted Task does on one visit: return `result`, or fail with `error`. */
type Outcome = { readonly result: Json } | { readonly error: string; readonly cause?: string };
type Script = Record<string, Outcome[]>;

const payload = (value: Json): Outcome => ({ result: { Payload: value } });

/**
 * The scenarios the doc counts, as scripted task outcomes in visit order. Each is one
 * execution: a retry's next attempt is another execution, started at its admission.
 */
const SCENARIOS = {
  success: {
    Dispatch: [{ result: { ok: true } }],
  },
  failedThenRetry: {
    Dispatch: [{ error: "ValueError", cause: "boom" }],
    AttemptFailed: [payload({ next: "retry", delaySeconds: 2 })],
    Requeue: [payload({ status: "queued" })],
  },
  failedThenEnd: {
    Dispatch: [{ error: "ValueError", cause: "boom" }],
    AttemptFailed: [payload({ next: "end", delaySeconds: 0 })],
    Requeue: [payload({ status: "failed" })],
  },
  timedOutThenEnd: {
    Dispatch: [{ error: "States.Timeout" }],
    AttemptFailed: [payload({ next: "end", delaySeconds: 0 })],
    Requeue: [payload({ status: "failed" })],
  },
  lostThenEnd: {
    Dispatch: [{ error: "States.HeartbeatTimeout" }],
    AttemptFailed: [payload({ next: "end", delaySeconds: 0 })],
    Requeue: [payload({ status: "failed" })],
  },
} satisfies Record<string, Script>;

/** The numbers docs/lifecycle.md states in "State transitions per job". */
function documentedCounts(): { success: number; ending: number; perRetry: number; beforeAdmission: number } {
  // Line breaks fall anywhere in the prose: one space for any run of white space.
  const doc = readFileSync(DOC_PATH, "utf8").replace(/\s+/g, " ");
  const success = /successful single-attempt job costs \*\*(\d+) state transitions?\*\*/.exec(doc);
  const ending = /attempt that ends the job[^*]*costs \*\*(\d+) state transitions?\*\*/.exec(doc);
  const perRetry = /Each retry adds \*\*(\d+) state transitions?\*\*/.exec(doc);
  const beforeAdmission = /job ended before admission[^*]*costs \*\*(\d+) state transitions?\*\*/.exec(doc);
  if (!success?.[1] || !ending?.[1] || !perRetry?.[1] || !beforeAdmission?.[1]) {
    throw new Error("docs/lifecycle.md no longer states the counts");
  }
  return {
    success: Number(success[1]),
    ending: Number(ending[1]),
    perRetry: Number(perRetry[1]),
    beforeAdmission: Number(beforeAdmission[1]),
  };
}

describe("job lifecycle definition", () => {
  it("is valid Amazon States Language", () => {
    // A copy: the validator writes defaults (QueryLanguage) into what it is given.
    const { isValid, errorsText } = aslValidator(structuredClone(definition));

    expect(isValid, errorsText("\n")).toBe(true);
  });

  it("has exactly the states the local endpoint and the docs name: no Pass, no Choice, no admission wait", () => {
    const states = Object.fromEntries(Object.entries(definition.States).map(([name, s]) => [name, s.Type]));

    expect(definition.StartAt).toBe("Dispatch");
    expect(states).toEqual({ Dispatch: "Task", AttemptFailed: "Task", BackoffWait: "Wait", Requeue: "Task" });
    expect(definition.States.Dispatch).toMatchObject({ End: true });
    expect(definition.States.AttemptFailed).toMatchObject({ Next: "BackoffWait" });
    expect(definition.States.BackoffWait).toMatchObject({
      Type: "Wait",
      SecondsPath: "$.decision.delaySeconds",
      Next: "Requeue",
    });
    expect(definition.States.Requeue).toMatchObject({ End: true });
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
      Dispatch: SQS_WAIT,
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
    ).toEqual({ AttemptFailed: "attempt-failed", Requeue: "requeue" });
  });

  it("lets no payload or result travel: only ids and the admission go into the execution's state", () => {
    const dispatch = definition.States.Dispatch as State;
    const body = (dispatch.Parameters as { MessageBody: Record<string, string> }).MessageBody;

    expect(Object.keys(body).sort()).toEqual(
      [
        "attempt.$",
        "executionArn.$",
        "heartbeatSeconds.$",
        "jobId.$",
        "runToken.$",
        "timeoutSeconds.$",
      ].sort(),
    );
    expect(dispatch).toMatchObject({
      Parameters: { "QueueUrl.$": "$.queueUrl" },
      TimeoutSecondsPath: "$.timeoutSeconds",
      // The backstop spans the queue wait; the worker beats every third of heartbeatSeconds.
      HeartbeatSecondsPath: "$.lostAfterSeconds",
      // The worker's output ({ok: true}) is not kept: the result is in the job's partition.
      ResultPath: null,
    });
    expect(definition.States.Requeue?.ResultPath).toBeNull();
    expect(definition.States.AttemptFailed).toMatchObject({
      ResultSelector: { "delaySeconds.$": "$.Payload.delaySeconds" },
      ResultPath: "$.decision",
    });
  });

  it("reads every field it uses from the DispatchInput the scheduler starts it with", () => {
    const paths: string[] = [];
    visit(definition as unknown as Json, "$", (path, key, value) => {
      // A ResultSelector reads the task's result, not the execution's state.
      if (path.includes(".ResultSelector.")) return;
      if (
        (key.endsWith(".$") || key.endsWith("Path")) &&
        typeof value === "string" &&
        /^\$\.\w/.test(value)
      ) {
        paths.push(value);
      }
    });
    const inputFields = new Set(Object.keys(dispatchInputSchema.parse(DISPATCH_INPUT)));
    // What the states write themselves: the caught failure and AttemptFailed's decision.
    const written = new Set(["failure", "decision"]);

    const unknown = paths.filter((p) => {
      const [root] = p.replace(/^\$\./, "").split(".");
      return !inputFields.has(root ?? "") && !written.has(root ?? "");
    });
    expect(unknown).toEqual([]);
  });

  it("catches every failure of the attempt into AttemptFailed, which reads its kind from the error", () => {
    const catchers = (definition.States.Dispatch?.Catch ?? []) as {
      ErrorEquals: string[];
      ResultPath: string;
      Next: string;
    }[];

    expect(catchers).toEqual([
      { ErrorEquals: ["States.ALL"], ResultPath: "$.failure", Next: "AttemptFailed" },
    ]);
    // No outcome travels: AttemptFailed reads the kind of failure from the error's name.
    expect(definition.States.AttemptFailed?.Parameters).toEqual({
      FunctionName: FUNCTION_ARN,
      Payload: {
        action: "attempt-failed",
        "jobId.$": "$.jobId",
        "attempt.$": "$.attempt",
        "error.$": "$.failure",
        // The caller: a step leaves alone a job that names another execution (supersededBy).
        "executionArn.$": "$$.Execution.Id",
      },
    });
    expect(definition.States.Requeue?.Parameters).toMatchObject({
      Payload: { "executionArn.$": "$$.Execution.Id" },
    });
    // The kinds the Catch chain of the previous definition named, now named by outcomeOf.
    expect(outcomeOf({ Error: "States.HeartbeatTimeout" })).toBe("lost");
    expect(outcomeOf({ Error: "lost", Cause: "node n1 went silent" })).toBe("lost");
    expect(outcomeOf({ Error: "States.Timeout" })).toBe("timed_out");
    expect(outcomeOf({ Error: "timeout", Cause: "timed out after 30 s" })).toBe("timed_out");
    expect(outcomeOf({ Error: "ValueError", Cause: "boom" })).toBe("failed");
    expect(outcomeOf({ Error: "States.TaskFailed" })).toBe("failed");
    expect(outcomeOf({})).toBe("failed");
  });

  it("costs what docs/lifecycle.md says: per successful job, per ending attempt and per retry (walking the graph)", () => {
    const documented = documentedCounts();

    const success = walk(definition, SCENARIOS.success);
    const failedOnce = walk(definition, SCENARIOS.failedThenRetry);
    const ending = walk(definition, SCENARIOS.failedThenEnd);

    expect(success).toEqual(["Dispatch"]);
    expect(success).toHaveLength(documented.success);
    expect(ending).toEqual(["Dispatch", "AttemptFailed", "BackoffWait", "Requeue"]);
    expect(ending).toHaveLength(documented.ending);
    // A retry: the failed attempt's whole execution, then the next attempt's own execution
    // (started at its admission), which costs what a first attempt does.
    expect(failedOnce).toEqual(ending);
    const failedOnceThenSucceeded = failedOnce.length + success.length;
    expect(failedOnceThenSucceeded - success.length).toBe(documented.perRetry);
    // No execution exists before admission: a job ended while it waited costs none.
    expect(documented.beforeAdmission).toBe(0);
  });

  it("routes each way an attempt can end to AttemptFailed with the caught error (walking the graph)", () => {
    for (const scenario of [SCENARIOS.timedOutThenEnd, SCENARIOS.lostThenEnd, SCENARIOS.failedThenEnd]) {
      expect(walk(definition, scenario)).toEqual(["Dispatch", "AttemptFailed", "BackoffWait", "Requeue"]);
    }
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
   * The interpreter resolves TimeoutSecondsPath against the task's Parameters instead of the
   * state input, which the local endpoint must also handle: adjusted here on a copy.
   */
  function localDefinition(): Definition {
    const local = structuredClone(definition);
    (local.States.Dispatch as State).TimeoutSecondsPath = "$.MessageBody.timeoutSeconds";
    return local;
  }

  /** Runs the definition with scripted tasks; returns the states entered and what each task got. */
  async function run(script: Script): Promise<{ entered: string[]; calls: [string, Json][]; output: Json }> {
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
    const execution = machine.run(DISPATCH_INPUT, {
      context: {
        Execution: { Id: EXECUTION_ARN },
        Task: { Token: "token-1" },
      },
      overrides: {
        taskResourceLocalHandlers: Object.fromEntries(
          ["Dispatch", "AttemptFailed", "Requeue"].map((n) => [n, handler(n)]),
        ),
        waitTimeOverrides: { BackoffWait: 0 },
      },
    });
    const entered: string[] = [];
    const logged = (async () => {
      for await (const event of execution.eventLogs) {
        if (event.type === "StateEntered") entered.push(event.state.name);
      }
    })();
    const output = (await execution.result) as Json;
    await logged;
    return { entered, calls, output };
  }

  it("enters the same states the graph walk counts, on success and on a failed attempt", async () => {
    const success = await run(SCENARIOS.success);
    const failed = await run(SCENARIOS.failedThenRetry);

    expect(success.entered).toEqual(walk(definition, SCENARIOS.success));
    expect(failed.entered).toEqual(walk(definition, SCENARIOS.failedThenRetry));
  });

  it("hands each step the payload app/lifecycle.ts parses", async () => {
    const { calls } = await run(SCENARIOS.failedThenRetry);

    expect(calls).toEqual([
      [
        "Dispatch",
        {
          QueueUrl: DISPATCH_INPUT.queueUrl,
          MessageBody: {
            jobId: "job_1",
            attempt: 1,
            timeoutSeconds: 40,
            heartbeatSeconds: 10,
            runToken: "token-1",
            executionArn: EXECUTION_ARN,
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
            error: { Error: "ValueError", Cause: "boom" },
            executionArn: EXECUTION_ARN,
          },
        },
      ],
      [
        "Requeue",
        {
          FunctionName: FUNCTION_ARN,
          Payload: { action: "requeue", jobId: "job_1", executionArn: EXECUTION_ARN },
        },
      ],
    ]);
  });

  it("sends app/lifecycle.ts a payload it accepts at every step, and runs on the scheduler's DispatchInput", async () => {
    const { calls } = await run(SCENARIOS.failedThenRetry);
    const lambdaPayloads = calls
      .filter(([name]) => name !== "Dispatch")
      .map(([, input]) => get(input, "$.Payload"));

    expect(lambdaPayloads).toHaveLength(2);
    for (const payload of lambdaPayloads)
      expect(lifecycleRequestSchema.safeParse(payload).error).toBeUndefined();
    expect(dispatchInputSchema.safeParse(DISPATCH_INPUT).error).toBeUndefined();
  });

  it("hands AttemptFailed the error of a timeout and of a lost heartbeat, which outcomeOf names", async () => {
    const timedOut = await run(SCENARIOS.timedOutThenEnd);
    const lost = await run(SCENARIOS.lostThenEnd);

    const errorOf = (calls: [string, Json][]) => {
      const [, input] = calls.find(([name]) => name === "AttemptFailed") ?? [];
      const parsed = lifecycleRequestSchema.parse(get(input ?? null, "$.Payload"));
      if (parsed.action !== "attempt-failed") throw new Error(`not attempt-failed: ${parsed.action}`);
      return parsed;
    };
    const timedOutRequest = errorOf(timedOut.calls);
    const lostRequest = errorOf(lost.calls);
    expect(timedOutRequest).toMatchObject({ error: { Error: "States.Timeout" } });
    expect(timedOutRequest.outcome).toBeUndefined();
    expect(outcomeOf(timedOutRequest.error)).toBe("timed_out");
    expect(lostRequest).toMatchObject({ error: { Error: "States.HeartbeatTimeout" } });
    expect(outcomeOf(lostRequest.error)).toBe("lost");
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
