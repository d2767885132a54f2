import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { App, Stage } from "aws-cdk-lib";
import type { Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { beforeAll, describe, expect, it } from "vitest";
import type { JobqStack } from "../../lib/jobq-stack";
import { LOG_RETENTION_DAYS, readSettings } from "../../lib/jobq-stack";
import { type CfnResource, nestedTemplate, resourcesOfType, synthJobqStack } from "./fixtures";

/**
 * Issue 10's "secure by default, proven" and "tracing and logs": one synth of the whole app (main
 * stack and the nested Compute and Web stacks), read by behaviour: what every log group keeps,
 * that every function and the state machine trace, what every table, queue, topic and bucket
 * encrypts and refuses, and that cdk-nag's AwsSolutions pack and cfn-lint find nothing left.
 */

/** A retention other than the default, so the test shows the key reaches every group. */
const RETENTION = 90;

let stack: JobqStack;
/** Main, Compute and Web, by name. */
let templates: Record<string, Template>;
let assemblyDir: string;

beforeAll(() => {
  const synth = synthJobqStack({ "jobq:logRetentionDays": String(RETENTION) });
  stack = synth.stack;
  if (!stack.workersStack || !stack.dashboardStack) throw new Error("the default stack has Compute and Web");
  templates = {
    Jobq: synth.template,
    Compute: nestedTemplate(stack.workersStack),
    Web: nestedTemplate(stack.dashboardStack),
  };
  const app = Stage.of(stack);
  if (!app) throw new Error("no app");
  assemblyDir = app.synth().directory;
});

/** Every resource of a type in every template, as `<template>/<logical id>`. */
function everywhere(type: string): [string, CfnResource][] {
  return Object.entries(templates).flatMap(([name, template]) =>
    Object.entries(resourcesOfType(template, type)).map(([id, r]): [string, CfnResource] => [
      `${name}/${id}`,
      r,
    ]),
  );
}

function settingsOf(context: Record<string, unknown>) {
  return readSettings(new App({ context }).node);
}

describe("log retention (jobq:logRetentionDays)", () => {
  it("applies to every log group of the main and nested stacks, and leaves no LogRetention custom resource", () => {
    const groups = everywhere("AWS::Logs::LogGroup");
    expect(groups.map(([id]) => id)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^Compute\//), expect.stringMatching(/^Web\//)]),
    );
    const without = groups.filter(([, g]) => g.Properties?.RetentionInDays !== RETENTION).map(([id]) => id);
    expect(without).toEqual([]);
    expect(everywhere("Custom::LogRetention")).toEqual([]);
  });

  it("defaults to 30 days and takes a number from cdk.json or a string from -c", () => {
    expect(settingsOf({}).logRetention).toBe(30);
    expect(settingsOf({ "jobq:logRetentionDays": 365 }).logRetention).toBe(365);
    expect(settingsOf({ "jobq:logRetentionDays": "7" }).logRetention).toBe(7);
  });

  it("fails the synth on a retention CloudWatch Logs does not accept, listing the ones it does", () => {
    for (const bad of ["31", 0, -1, "forever", "9999"]) {
      expect(() => settingsOf({ "jobq:logRetentionDays": bad })).toThrow(/jobq:logRetentionDays/);
    }
    expect(() => settingsOf({ "jobq:logRetentionDays": "31" })).toThrow(/1, 3, 5, 7, 14, 30/);
    expect(LOG_RETENTION_DAYS).toContain(3653);
  });
});

describe("tracing", () => {
  it("is active on every Lambda function, CDK's own included", () => {
    const functions = everywhere("AWS::Lambda::Function");
    expect(functions.length).toBeGreaterThan(0);
    const untraced = functions
      .filter(([, fn]) => (fn.Properties?.TracingConfig as { Mode?: string } | undefined)?.Mode !== "Active")
      .map(([id]) => id);
    expect(untraced).toEqual([]);
  });

  it("gives every jobq function what Powertools Tracer, Logger and Metrics read", () => {
    for (const [id, fn] of everywhere("AWS::Lambda::Function")) {
      if (id.startsWith("Web/Custom")) continue; // CDK's BucketDeployment handler runs no Powertools.
      const variables = (fn.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined)
        ?.Variables;
      expect(variables, id).toMatchObject({
        POWERTOOLS_SERVICE_NAME: "jobq",
        POWERTOOLS_METRICS_NAMESPACE: "jobq",
        // Responses carry payloads, results and the one-time token secret: not into X-Ray.
        POWERTOOLS_TRACER_CAPTURE_RESPONSE: "false",
      });
    }
  });

  it("is on for the lifecycle state machine and the REST API stage", () => {
    const machines = everywhere("AWS::StepFunctions::StateMachine");
    expect(machines.length).toBeGreaterThan(0);
    for (const [id, machine] of machines) {
      expect(machine.Properties?.TracingConfiguration, id).toEqual({ Enabled: true });
    }
    for (const [id, stage] of everywhere("AWS::ApiGateway::Stage")) {
      expect(stage.Properties?.TracingEnabled, id).toBe(true);
    }
  });
});

/** The Deny statement of a resource policy that refuses every request not made over TLS. */
function deniesInsecureTransport(document: unknown): boolean {
  const statements = (document as { Statement?: Record<string, unknown>[] }).Statement ?? [];
  return statements.some(
    (s) =>
      s.Effect === "Deny" &&
      JSON.stringify(s.Condition) === JSON.stringify({ Bool: { "aws:SecureTransport": "false" } }) &&
      JSON.stringify(s.Principal) === JSON.stringify({ AWS: "*" }),
  );
}

describe("encryption at rest and TLS only", () => {
  it("encrypts every DynamoDB table and keeps point-in-time recovery on it", () => {
    const tables = everywhere("AWS::DynamoDB::Table");
    expect(tables.length).toBeGreaterThan(0);
    for (const [id, table] of tables) {
      expect(table.Properties?.SSESpecification, id).toMatchObject({ SSEEnabled: true });
      expect(table.Properties?.PointInTimeRecoverySpecification, id).toEqual({
        PointInTimeRecoveryEnabled: true,
      });
    }
  });

  it("encrypts every SQS queue and refuses every request to it over plain HTTP", () => {
    const queues = everywhere("AWS::SQS::Queue");
    expect(queues.length).toBeGreaterThan(0);
    const policies = everywhere("AWS::SQS::QueuePolicy").map(([, p]) => p.Properties ?? {});
    for (const [id, queue] of queues) {
      const encrypted = queue.Properties?.SqsManagedSseEnabled === true || queue.Properties?.KmsMasterKeyId;
      expect(encrypted, `${id} is encrypted`).toBeTruthy();
      const logicalId = id.split("/")[1] ?? "";
      const tlsOnly = policies.some(
        (p) =>
          JSON.stringify(p.Queues).includes(`"${logicalId}"`) && deniesInsecureTransport(p.PolicyDocument),
      );
      expect(tlsOnly, `${id} refuses non-TLS requests`).toBe(true);
    }
  });

  it("encrypts every S3 bucket and refuses every request to it over plain HTTP", () => {
    const buckets = everywhere("AWS::S3::Bucket");
    expect(buckets.length).toBeGreaterThan(0);
    const policies = everywhere("AWS::S3::BucketPolicy").map(([, p]) => p.Properties ?? {});
    for (const [id, bucket] of buckets) {
      expect(bucket.Properties?.BucketEncryption, `${id} is encrypted`).toBeTruthy();
      const logicalId = id.split("/")[1] ?? "";
      const tlsOnly = policies.some(
        (p) =>
          JSON.stringify(p.Bucket).includes(`"${logicalId}"`) && deniesInsecureTransport(p.PolicyDocument),
      );
      expect(tlsOnly, `${id} refuses non-TLS requests`).toBe(true);
    }
  });

  it("encrypts every SNS topic with a KMS key", () => {
    // None today; the alarm topic (lib/job-monitoring.ts) is to come with its own key.
    for (const [id, topic] of everywhere("AWS::SNS::Topic")) {
      expect(topic.Properties?.KmsMasterKeyId, id).toBeTruthy();
    }
  });
});

describe("cdk-nag AwsSolutions", () => {
  it("finds nothing unacknowledged in the main stack or the nested ones", () => {
    const app = Stage.of(stack);
    if (!app) throw new Error("no app");
    // The app is synthesized (beforeAll), so every acknowledgement of lib/nag-acknowledgements.ts
    // is recorded and references are the templates' own.
    const { violations } = new AwsSolutionsChecks(app).validateScope(app);
    const findings = violations.flatMap((v) =>
      v.violatingResources.map(
        (r) => `${v.ruleName} (${v.severity}) at ${r.constructPath ?? r.resourceLogicalId}: ${v.description}`,
      ),
    );
    expect(
      findings,
      `cdk-nag findings: fix each, or acknowledge it with a reason in lib/nag-acknowledgements.ts\n${findings.join("\n")}`,
    ).toEqual([]);
  });
});

/**
 * cfn-lint warnings accepted, with why. Anything else it reports as a warning is printed; errors
 * fail the test.
 */
const CFN_LINT_IGNORED: Readonly<Record<string, string>> = {
  W3005:
    "CDK adds DependsOn on a function's role and default policy next to the GetAtt of the role: redundant, and CDK's to change",
};

interface CfnLintMatch {
  readonly Level: string;
  readonly Message: string;
  readonly Rule: { readonly Id: string };
  readonly Filename: string;
  readonly Location: { readonly Path?: readonly (string | number)[] };
}

describe("cfn-lint", () => {
  const version = spawnSync("cfn-lint", ["--version"], { encoding: "utf8" });
  const present = version.status === 0;
  if (!present) {
    console.warn(
      "cfn-lint is not installed here (it comes from pip, which these machines cannot reach): skipping the lint of the synthesized templates",
    );
  }

  it.skipIf(!present)("finds no error in the main and nested templates", () => {
    const files = readdirSync(assemblyDir)
      .filter((f) => f.endsWith(".template.json"))
      .map((f) => join(assemblyDir, f));
    expect(files.some((f) => f.endsWith(".nested.template.json"))).toBe(true);
    const run = spawnSync("cfn-lint", ["--format", "json", "--", ...files], {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    // Exit codes are a bit mask (2 errors, 4 warnings, 8 informational); 1 is cfn-lint failing.
    expect(run.status === 1 || run.status === null, run.stderr).toBe(false);
    const matches = JSON.parse(run.stdout || "[]") as CfnLintMatch[];
    const render = (m: CfnLintMatch) =>
      `${m.Rule.Id} ${m.Level} in ${m.Filename.split("/").pop()} at ${(m.Location.Path ?? []).join("/")}: ${m.Message}`;
    const warnings = matches.filter((m) => m.Level !== "Error" && !(m.Rule.Id in CFN_LINT_IGNORED));
    if (warnings.length > 0) console.warn(`cfn-lint warnings:\n${warnings.map(render).join("\n")}`);
    const errors = matches.filter((m) => m.Level === "Error").map(render);
    expect(errors, errors.join("\n")).toEqual([]);
  });
});
