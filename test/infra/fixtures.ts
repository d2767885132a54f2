import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { App, CfnElement, type NestedStack, Stack } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import type { IConstruct } from "constructs";
import { ROUTES } from "../../functions/routes";
import { JobqStack } from "../../lib/jobq-stack";
import type { WorkerImageSource } from "../../lib/worker-pools";

/**
 * Shared by the infra tests: a synthesized JobqStack without bundling, and readers for the parts of
 * a template the assertions are about (resource paths, a role's policy statements).
 */

/**
 * NodejsFunction insists that its entry file exists even when bundling is skipped, and the
 * route handlers are not this tier's subject: stand-ins keep these tests independent
 * of functions/api. `npm run synth` bundles the real modules.
 */
export function stubHandlersDir(): string {
  // Under the project root (NodejsFunction requires it) but git-ignored; one fixed dir shared by
  // every test worker, written only where a stand-in is missing, so runs leave nothing new behind.
  const dir = join(process.cwd(), "node_modules", ".cache", "jobq-infra-handlers");
  mkdirSync(dir, { recursive: true });
  for (const route of ROUTES) {
    const file = join(dir, `${route.handler}.ts`);
    if (!existsSync(file)) writeFileSync(file, "export const handler = async () => ({ statusCode: 200 });\n");
  }
  return dir;
}

/** Stand-ins for functions/lifecycle.ts, scheduler.ts and reconciler.ts, for the same reason. */
export function stubFunctionsDir(): string {
  const dir = join(process.cwd(), "node_modules", ".cache", "jobq-infra-functions");
  mkdirSync(dir, { recursive: true });
  for (const name of ["lifecycle", "scheduler", "reconciler", "stats-stream"]) {
    const file = join(dir, `${name}.ts`);
    if (!existsSync(file)) writeFileSync(file, "export const handler = async () => ({});\n");
  }
  return dir;
}

/**
 * A stand-in Docker context with worker/Dockerfile: the image asset needs its Dockerfile at
 * construction. Synth only stages the context and never builds it; `npm run synth` stages the
 * real one.
 */
export function stubWorkerImage(): WorkerImageSource {
  const directory = join(process.cwd(), "node_modules", ".cache", "jobq-infra-worker");
  const files: Record<string, string> = {
    "worker/Dockerfile": "FROM scratch\nCOPY . /app\n",
    "worker/Dockerfile.dockerignore": "# only what the build copies\n**\n!worker/**\n!package.json\n",
    "worker/main.ts": "export {};\n",
    "package.json": "{}\n",
    "docs/deploy.md": "not in the image\n",
    // What the Dockerfile's ignore file and WORKER_IMAGE_EXCLUDE must keep out of the context.
    "node_modules/dependency/index.js": "module.exports = {};\n",
    "test/worker.test.ts": "export {};\n",
    "cdk.out/manifest.json": "{}\n",
  };
  for (const [path, text] of Object.entries(files)) {
    const file = join(directory, path);
    mkdirSync(dirname(file), { recursive: true });
    if (!existsSync(file)) writeFileSync(file, text);
  }
  return { directory, file: "worker/Dockerfile" };
}

/**
 * A stand-in for web/dist (the dashboard bundle): the construct needs its index.html, and the web
 * build is not this tier's subject. `npm run synth` deploys the real bundle.
 */
export function stubDashboardDir(): string {
  const dir = join(process.cwd(), "node_modules", ".cache", "jobq-infra-dashboard");
  const files: Record<string, string> = {
    "index.html":
      "<!doctype html><title>jobq</title><script type=module src=./assets/index-0000.js></script>\n",
    "assets/index-0000.js": "export {};\n",
  };
  for (const [path, text] of Object.entries(files)) {
    const file = join(dir, path);
    mkdirSync(dirname(file), { recursive: true });
    if (!existsSync(file)) writeFileSync(file, text);
  }
  return dir;
}

export function synthJobqStack(
  context: Record<string, unknown> = {},
  {
    validate = false,
    beforeSynth,
  }: {
    validate?: boolean;
    /** Adds to the stack before it is synthesized (probe principals for the grant methods). */
    beforeSynth?: (stack: JobqStack) => void;
  } = {},
): {
  stack: JobqStack;
  template: Template;
} {
  // Bundling every function would make each synth take seconds per function; see LOCAL.md.
  // CDK's own CloudFormation validation (a WASM engine, ~10 s to start per test worker) runs in
  // one test of jobq-stack.test.ts instead of in every synth.
  const app = new App({
    context: { "aws:cdk:bundling-stacks": [], ...context },
    builtinCloudFormationValidation: validate,
  });
  const stack = new JobqStack(app, "Jobq", {
    handlersDir: stubHandlersDir(),
    functionsDir: stubFunctionsDir(),
    workerImage: stubWorkerImage(),
    dashboardPath: stubDashboardDir(),
  });
  beforeSynth?.(stack);
  return { stack, template: Template.fromStack(stack) };
}

/**
 * A nested stack's template with each of its parameters replaced by what the parent passes it,
 * so that assertions name the parent's resources (`{ "Fn::GetAtt": [table, "Arn"] }`, a queue's
 * `Ref`) as they would if everything were in one stack.
 */
export function nestedTemplate(nested: NestedStack | undefined): Template {
  if (!nested) throw new Error("the stack has no such nested stack (a variant that leaves it out?)");
  const parent = nested.nestedStackParent;
  const resource = nested.nestedStackResource;
  if (!parent || !(resource instanceof CfnElement)) throw new Error(`${nested.node.path} is not nested`);
  const parentResources = Template.fromStack(parent).toJSON().Resources as Record<string, CfnResource>;
  const parameters = (parentResources[parent.getLogicalId(resource)]?.Properties?.Parameters ?? {}) as Record<
    string,
    unknown
  >;
  const substitute = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(substitute);
    if (typeof value !== "object" || value === null) return value;
    const entries = Object.entries(value);
    const [only] = entries;
    if (entries.length === 1 && only?.[0] === "Ref" && typeof only[1] === "string" && only[1] in parameters)
      return parameters[only[1]];
    return Object.fromEntries(entries.map(([key, each]) => [key, substitute(each)]));
  };
  return Template.fromJSON(substitute(Template.fromStack(nested).toJSON()) as Record<string, unknown>);
}

export interface CfnResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
  readonly DeletionPolicy?: string;
  readonly UpdateReplacePolicy?: string;
}

export function resourcesOfType(template: Template, type: string): Record<string, CfnResource> {
  return template.findResources(type) as Record<string, CfnResource>;
}

/** A Lambda function's environment variables as the template has them (strings or intrinsics). */
export function environmentOf(template: Template, functionId: string): Record<string, unknown> {
  const fn = resourcesOfType(template, "AWS::Lambda::Function")[functionId];
  const environment = fn?.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined;
  return environment?.Variables ?? {};
}

/** A construct's logical id in the template of the stack that holds it (nested stacks included). */
export function logicalId(construct: IConstruct): string {
  const resource = construct.node.defaultChild;
  if (!(resource instanceof CfnElement))
    throw new Error(`${construct.node.path} has no CloudFormation resource`);
  return Stack.of(resource).getLogicalId(resource);
}

export function logicalIdOfElement(element: IConstruct): string {
  if (!(element instanceof CfnElement))
    throw new Error(`${element.node.path} is not a CloudFormation element`);
  return Stack.of(element).getLogicalId(element);
}

/** Whether a template fragment mentions a resource by logical id (Ref or Fn::GetAtt). */
export function mentions(fragment: unknown, id: string): boolean {
  return JSON.stringify(fragment).includes(`"${id}"`);
}

/** The full path (e.g. `/jobs/{id}/cancel`) of every AWS::ApiGateway::Resource, by logical id. */
export function resourcePaths(template: Template): Map<string, string> {
  const resources = resourcesOfType(template, "AWS::ApiGateway::Resource");
  const paths = new Map<string, string>();
  const pathOf = (id: string): string => {
    const known = paths.get(id);
    if (known !== undefined) return known;
    const props = resources[id]?.Properties;
    if (!props) throw new Error(`no AWS::ApiGateway::Resource ${id}`);
    const parent = props.ParentId;
    const parentPath = isRef(parent) ? pathOf(parent.Ref) : "";
    const path = `${parentPath}/${String(props.PathPart)}`;
    paths.set(id, path);
    return path;
  };
  for (const id of Object.keys(resources)) pathOf(id);
  return paths;
}

/** The path a method is on: its resource's path, or `/` for the root (a Fn::GetAtt RootResourceId). */
export function methodPath(method: CfnResource, paths: Map<string, string>): string {
  const resourceId = method.Properties?.ResourceId;
  if (!isRef(resourceId)) return "/";
  const path = paths.get(resourceId.Ref);
  if (path === undefined) throw new Error(`method on unknown resource ${resourceId.Ref}`);
  return path;
}

function isRef(value: unknown): value is { Ref: string } {
  return typeof value === "object" && value !== null && typeof (value as { Ref?: unknown }).Ref === "string";
}

export interface PolicyStatement {
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
}

export function actionsOf(statement: PolicyStatement): string[] {
  return typeof statement.Action === "string" ? [statement.Action] : statement.Action;
}

export function resourcesOf(statement: PolicyStatement): unknown[] {
  return Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource];
}

/** Every statement of every AWS::IAM::Policy attached to the role. */
export function roleStatements(template: Template, roleId: string): PolicyStatement[] {
  const policies = Object.values(resourcesOfType(template, "AWS::IAM::Policy"));
  return policies
    .filter((p) => mentions(p.Properties?.Roles, roleId))
    .flatMap(
      (p) => (p.Properties?.PolicyDocument as { Statement?: PolicyStatement[] } | undefined)?.Statement ?? [],
    );
}

/** Statements that grant something in DynamoDB, including wildcards that would. */
export function dynamoStatements(statements: readonly PolicyStatement[]): PolicyStatement[] {
  return statements.filter((s) => actionsOf(s).some((a) => a === "*" || a.startsWith("dynamodb:")));
}

/** One permission as `<action> <resource JSON>`, so a role's grants compare as a set. */
export function grant(action: string, resource: unknown): string {
  return `${action} ${JSON.stringify(resource)}`;
}

/**
 * Every (action, resource) a role's policies allow, except X-Ray's (every traced function and
 * state machine gets those, on `*`).
 */
export function grantsOf(statements: readonly PolicyStatement[]): Set<string> {
  const grants = new Set<string>();
  for (const statement of statements) {
    if (statement.Effect !== "Allow") continue;
    for (const action of actionsOf(statement)) {
      if (action.startsWith("xray:")) continue;
      for (const resource of resourcesOf(statement)) grants.add(grant(action, resource));
    }
  }
  return grants;
}

/** Grants of each action on a table and its indexes, as grantTable (lib/jobq-function.ts) writes them. */
export function tableGrants(tableId: string, actions: readonly string[]): string[] {
  const arn = { "Fn::GetAtt": [tableId, "Arn"] };
  return actions.flatMap((a) => [grant(a, arn), grant(a, { "Fn::Join": ["", [arn, "/index/*"]] })]);
}

/**
 * A template value as a string the way CloudFormation would resolve it, with stand-ins for what
 * only a deploy knows (`<Ref:id>`, `<id.Attr>`): enough to feed functions/config.ts.
 */
export function resolveForTest(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null) {
    const v = value as Record<string, unknown>;
    if (typeof v.Ref === "string") return `<Ref:${v.Ref}>`;
    const getAtt = v["Fn::GetAtt"];
    if (Array.isArray(getAtt)) return `<${getAtt.join(".")}>`;
    const join = v["Fn::Join"];
    if (Array.isArray(join)) {
      const [separator, parts] = join as [string, unknown[]];
      return parts.map(resolveForTest).join(separator);
    }
  }
  throw new Error(`cannot resolve ${JSON.stringify(value)}`);
}

/** A function's or container's variables, resolved with resolveForTest. */
export function resolvedEnvironment(variables: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(variables).map(([k, v]) => [k, resolveForTest(v)]));
}

/** The role of a Lambda function or task, by logical id. */
export function roleIdOf(construct: { readonly role?: IConstruct | undefined }): string {
  if (!construct.role) throw new Error("no role");
  return logicalId(construct.role);
}
