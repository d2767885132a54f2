import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { App, type CfnElement, type NestedStack, Stage } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CORS_ALLOW_HEADERS } from "../../functions/cors";
import { ROUTES } from "../../functions/routes";
import { JobqStack, readSettings } from "../../lib/jobq-stack";
import {
  type CfnResource,
  environmentOf,
  logicalId,
  logicalIdOfElement,
  methodPath,
  resolveForTest,
  resourcePaths,
  resourcesOfType,
  stubFunctionsDir,
  stubHandlersDir,
  stubWorkerImage,
  synthJobqStack,
} from "./fixtures";

/**
 * The web dashboard in AWS (lib/web-dashboard.ts) and the API's CORS for it (JobApi.allowOrigin):
 * a private bucket only the distribution reads, HTTPS, the generated config.json, and API answers
 * of every kind readable by exactly the distribution's origin.
 */

let stack: JobqStack;
/** The main stack's template. */
let template: Template;
/** The nested stack's: the dashboard and the API's preflights. */
let nested: NestedStack;
let web: Template;
let distributionId: string;
/** `https://<distribution domain>` in the nested stack, as resolveForTest writes it. */
let dashboardOrigin: string;
/** The same in the main stack: the nested stack's output. */
let originOutside: string;

beforeAll(() => {
  ({ stack, template } = synthJobqStack());
  if (!stack.dashboard || !stack.dashboardStack) throw new Error("no dashboard");
  nested = stack.dashboardStack;
  web = Template.fromStack(nested);
  distributionId = logicalId(stack.dashboard.distribution);
  dashboardOrigin = `https://<${distributionId}.DomainName>`;
  originOutside = resolveForTest(stack.resolve(stack.dashboard.origin));
});

/**
 * A nested stack's value as resolveForTest writes it, with its parameters replaced by what the
 * main stack passes them (`<Ref:referencetoJobqApi…Ref>` becomes `<Ref:Api…>`).
 */
function resolveAcross(value: unknown): string {
  const nestedResource = resourcesOfType(template, "AWS::CloudFormation::Stack")[
    logicalIdOfElement(nested.nestedStackResource as CfnElement)
  ];
  const parameters = (nestedResource?.Properties?.Parameters ?? {}) as Record<string, unknown>;
  return resolveForTest(value).replaceAll(/<Ref:(\w+)>/g, (ref, name: string) =>
    name in parameters ? resolveForTest(parameters[name]) : ref,
  );
}

function only(type: string): CfnResource {
  const resources = Object.values(resourcesOfType(web, type));
  expect(resources).toHaveLength(1);
  const [resource] = resources;
  if (!resource) throw new Error(`no ${type}`);
  return resource;
}

interface Statement {
  readonly Effect: string;
  readonly Principal?: unknown;
  readonly Action: string | string[];
  readonly Condition?: Record<string, Record<string, unknown>>;
}

function bucketStatements(): Statement[] {
  const document = only("AWS::S3::BucketPolicy").Properties?.PolicyDocument as
    | { Statement: Statement[] }
    | undefined;
  return document?.Statement ?? [];
}

describe("bucket", () => {
  it("blocks every kind of public access, encrypts at rest and hosts no website", () => {
    const bucket = only("AWS::S3::Bucket");
    expect(bucket.Properties?.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(bucket.Properties?.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }],
    });
    expect(bucket.Properties?.WebsiteConfiguration).toBeUndefined();
  });

  it("refuses every request not made over TLS", () => {
    const statements = bucketStatements();
    expect(statements).toContainEqual(
      expect.objectContaining({
        Effect: "Deny",
        Action: "s3:*",
        Principal: { AWS: "*" },
        Condition: { Bool: { "aws:SecureTransport": "false" } },
      }),
    );
  });

  it("lets only CloudFront read it, on behalf of this distribution alone (origin access control)", () => {
    const statements = bucketStatements();
    const allows = statements.filter((s) => s.Effect === "Allow");
    expect(allows.length).toBeGreaterThan(0);
    for (const statement of allows) {
      expect(statement.Principal).toEqual({ Service: "cloudfront.amazonaws.com" });
      expect([statement.Action].flat()).toEqual(["s3:GetObject"]);
      const sourceArn = statement.Condition?.StringEquals?.["AWS:SourceArn"];
      expect(resolveForTest(sourceArn)).toMatch(
        new RegExp(
          `^arn:<Ref:AWS::Partition>:cloudfront::<Ref:AWS::AccountId>:distribution/<Ref:${distributionId}>$`,
        ),
      );
    }
  });
});

describe("distribution", () => {
  function config(): Record<string, unknown> {
    return only("AWS::CloudFront::Distribution").Properties?.DistributionConfig as Record<string, unknown>;
  }
  function behaviours(): Record<string, unknown>[] {
    const c = config();
    return [
      c.DefaultCacheBehavior as Record<string, unknown>,
      ...((c.CacheBehaviors ?? []) as Record<string, unknown>[]),
    ];
  }
  function headersPolicy(behaviour: Record<string, unknown>): Record<string, unknown> {
    const ref = (behaviour.ResponseHeadersPolicyId as { Ref: string }).Ref;
    const policy = resourcesOfType(web, "AWS::CloudFront::ResponseHeadersPolicy")[ref];
    return policy?.Properties?.ResponseHeadersPolicyConfig as Record<string, unknown>;
  }

  it("reaches the bucket through origin access control, never an identity or a website endpoint", () => {
    const origins = config().Origins as Record<string, unknown>[];
    expect(origins).toHaveLength(1);
    const [origin] = origins;
    expect(origin?.OriginAccessControlId).toBeDefined();
    expect(origin?.S3OriginConfig).toEqual({ OriginAccessIdentity: "" });
    expect(origin?.CustomOriginConfig).toBeUndefined();
    const oac = only("AWS::CloudFront::OriginAccessControl");
    expect(oac.Properties?.OriginAccessControlConfig).toMatchObject({
      OriginAccessControlOriginType: "s3",
      SigningBehavior: "always",
      SigningProtocol: "sigv4",
    });
  });

  it("serves index.html at / and only over HTTPS (plain HTTP is redirected)", () => {
    expect(config().DefaultRootObject).toBe("index.html");
    for (const behaviour of behaviours()) {
      expect(behaviour.ViewerProtocolPolicy).toBe("redirect-to-https");
      expect(behaviour.AllowedMethods).toEqual(["GET", "HEAD"]);
    }
  });

  it("caches the hashed /assets/* for a year and never index.html or config.json", () => {
    const [page, ...rest] = behaviours();
    const assets = rest.find((b) => b.PathPattern === "/assets/*");
    if (!page || !assets) throw new Error("missing behaviour");
    const CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad";
    const CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6";
    expect(page.CachePolicyId).toBe(CACHING_DISABLED);
    expect(assets.CachePolicyId).toBe(CACHING_OPTIMIZED);
    const cacheControl = (behaviour: Record<string, unknown>) =>
      (
        headersPolicy(behaviour).CustomHeadersConfig as { Items: { Header: string; Value: string }[] }
      ).Items.find((h) => h.Header === "Cache-Control")?.Value;
    expect(cacheControl(page)).toBe("no-cache");
    expect(cacheControl(assets)).toBe("public, max-age=31536000, immutable");
  });

  it("sends security headers whose CSP lets the page connect to the jobq API and stream alone", () => {
    if (!stack.dashboard || !stack.jobStream) throw new Error("no dashboard or stream");
    const restApiId = logicalId(stack.jobApi.api);
    const streamApiId = logicalId(stack.jobStream.api);
    for (const behaviour of behaviours()) {
      const security = headersPolicy(behaviour).SecurityHeadersConfig as Record<
        string,
        Record<string, unknown>
      >;
      expect(security.StrictTransportSecurity).toMatchObject({
        AccessControlMaxAgeSec: 31536000,
        Override: true,
      });
      expect(security.ContentTypeOptions).toEqual({ Override: true });
      expect(security.FrameOptions).toMatchObject({ FrameOption: "DENY" });
      const csp = resolveAcross(security.ContentSecurityPolicy?.ContentSecurityPolicy);
      const connect = csp
        .split(";")
        .map((d) => d.trim())
        .find((d) => d.startsWith("connect-src "));
      expect(connect?.split(" ").slice(1)).toEqual([
        "'self'",
        `https://<Ref:${restApiId}>.execute-api.<Ref:AWS::Region>.<Ref:AWS::URLSuffix>`,
        `wss://<Ref:${streamApiId}>.execute-api.<Ref:AWS::Region>.<Ref:AWS::URLSuffix>`,
      ]);
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
    }
  });

  it("is the DashboardUrl output", () => {
    const output = template.findOutputs("DashboardUrl").DashboardUrl as { Value: unknown } | undefined;
    expect(resolveForTest(output?.Value)).toBe(`${originOutside}/`);
    expect(originOutside).toMatch(/^https:\/\/<\w+\.Outputs\.\w+DomainName>$/);
  });
});

describe("deployment", () => {
  it("copies the bundle and a config.json naming the API's and the stream's stage URLs", () => {
    const deployment = only("Custom::CDKBucketDeployment");
    const props = deployment.Properties as {
      SourceObjectKeys: string[];
      SourceMarkers?: Record<string, unknown>[];
      DestinationBucketName: unknown;
      Prune?: boolean;
    };
    expect(props.DestinationBucketName).toEqual({ Ref: logicalId(stack.dashboard?.bucket ?? stack) });
    expect(props.SourceObjectKeys).toHaveLength(2);

    // Each source is an asset staged in the cloud assembly as asset.<hash>; config.json is the one
    // with markers the deployment replaces with deploy-time values.
    const app = Stage.of(stack);
    if (!app) throw new Error("no app");
    const assembly = app.synth().directory;
    const staged = props.SourceObjectKeys.map((key) => join(assembly, `asset.${key.replace(/\.zip$/, "")}`));
    expect(existsSync(join(staged[0] ?? "", "index.html"))).toBe(true);
    let config = readFileSync(join(staged[1] ?? "", "config.json"), "utf8");
    for (const [marker, value] of Object.entries(props.SourceMarkers?.[1] ?? {})) {
      config = config.replaceAll(marker, resolveAcross(value));
    }
    // The outputs' URLs; the API's names its stage by Ref, which resolves to the stage's name.
    const outputs = template.findOutputs("*") as Record<string, { Value: unknown }>;
    const apiUrl = resolveForTest(outputs.ApiUrl?.Value);
    expect(apiUrl).toMatch(/^https:\/\/.*\/<Ref:ApiDeploymentStagev1\w+>\/$/);
    expect(JSON.parse(config)).toEqual({
      apiUrl: apiUrl.replace(/<Ref:ApiDeploymentStagev1\w+>/, "v1"),
      streamUrl: resolveForTest(outputs.StreamUrl?.Value),
    });
  });
});

describe("CORS on the API", () => {
  function optionsMethods(): CfnResource[] {
    return Object.values(resourcesOfType(web, "AWS::ApiGateway::Method")).filter(
      (m) => m.Properties?.HttpMethod === "OPTIONS",
    );
  }

  it("answers a preflight on every route's path, for exactly the dashboard's origin and the path's methods", () => {
    const paths = resourcePaths(template);
    // Each preflight names its resource by a parameter of the nested stack: the main stack's resource.
    const pathOf = (method: CfnResource) => {
      const resourceId = method.Properties?.ResourceId;
      const across = resolveAcross(resourceId);
      const ref = /^<Ref:(\w+)>$/.exec(across)?.[1];
      return ref === undefined
        ? "/"
        : methodPath({ Type: "", Properties: { ResourceId: { Ref: ref } } }, paths);
    };
    expect(
      optionsMethods().every(
        (m) =>
          resolveAcross(m.Properties?.RestApiId) === resolveForTest({ Ref: logicalId(stack.jobApi.api) }),
      ),
    ).toBe(true);
    const preflights = new Map(optionsMethods().map((m) => [pathOf(m), m]));
    const routePaths = [...new Set(ROUTES.map((r) => r.path))];
    expect([...preflights.keys()].sort()).toEqual(routePaths.sort());
    for (const path of routePaths) {
      const method = preflights.get(path);
      // API Gateway answers it itself: no authorizer (a browser's preflight carries no token), no function.
      expect(method?.Properties?.AuthorizationType).toBe("NONE");
      const integration = method?.Properties?.Integration as {
        Type: string;
        IntegrationResponses: { ResponseParameters: Record<string, unknown> }[];
      };
      expect(integration.Type).toBe("MOCK");
      const headers = integration.IntegrationResponses[0]?.ResponseParameters ?? {};
      const header = (name: string) => resolveForTest(headers[`method.response.header.${name}`]);
      expect(header("Access-Control-Allow-Origin")).toBe(`'${dashboardOrigin}'`);
      const methods = ROUTES.filter((r) => r.path === path).map((r) => r.method);
      expect(header("Access-Control-Allow-Methods")).toBe(`'${methods.join(",")}'`);
      expect(header("Access-Control-Allow-Headers")).toBe(`'${CORS_ALLOW_HEADERS.join(",")}'`);
    }
  });

  it("gives every route's function the dashboard's origin as JOBQ_CORS_ORIGIN", () => {
    for (const route of ROUTES) {
      const fn = stack.jobApi.functions[route.id];
      if (!fn) throw new Error(`no function for ${route.id}`);
      const variables = environmentOf(template, logicalId(fn));
      expect(resolveForTest(variables.JOBQ_CORS_ORIGIN)).toBe(originOutside);
    }
  });

  it("puts the origin on API Gateway's own answers too (authorizer 401s, 404, 413, 429, 4xx, 5xx)", () => {
    const responses = Object.values(resourcesOfType(template, "AWS::ApiGateway::GatewayResponse"));
    expect(responses.map((r) => r.Properties?.ResponseType).sort()).toEqual(
      [
        "ACCESS_DENIED",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
        "MISSING_AUTHENTICATION_TOKEN",
        "REQUEST_TOO_LARGE",
        "THROTTLED",
        "UNAUTHORIZED",
      ].sort(),
    );
    for (const response of responses) {
      const headers = response.Properties?.ResponseParameters as Record<string, unknown>;
      expect(resolveForTest(headers["gatewayresponse.header.Access-Control-Allow-Origin"])).toBe(
        `'${originOutside}'`,
      );
      expect(headers["gatewayresponse.header.Access-Control-Expose-Headers"]).toContain("Retry-After");
    }
  });
});

describe("context jobq:dashboard", () => {
  it("is on by default and off with false, as a -c string or a cdk.json boolean", () => {
    const settings = (context: Record<string, unknown>) => readSettings(new App({ context }).node).dashboard;
    expect(settings({})).toBe(true);
    expect(settings({ "jobq:dashboard": "false" })).toBe(false);
    expect(settings({ "jobq:dashboard": false })).toBe(false);
    expect(settings({ "jobq:dashboard": "true" })).toBe(true);
    expect(() => settings({ "jobq:dashboard": "no" })).toThrow(/jobq:dashboard/);
  });

  it("off leaves out CloudFront, the bucket and every trace of CORS (LocalStack's free tier)", () => {
    const off = synthJobqStack({ "jobq:dashboard": "false" });
    expect(off.stack.dashboard).toBeUndefined();
    expect(off.stack.dashboardStack).toBeUndefined();
    for (const type of ["AWS::CloudFront::Distribution", "AWS::S3::Bucket", "Custom::CDKBucketDeployment"]) {
      expect(resourcesOfType(off.template, type)).toEqual({});
    }
    const methods = Object.values(resourcesOfType(off.template, "AWS::ApiGateway::Method"));
    expect(methods.filter((m) => m.Properties?.HttpMethod === "OPTIONS")).toEqual([]);
    for (const fn of Object.values(off.stack.jobApi.functions)) {
      expect(environmentOf(off.template, logicalId(fn)).JOBQ_CORS_ORIGIN).toBeUndefined();
    }
    const responses = Object.values(resourcesOfType(off.template, "AWS::ApiGateway::GatewayResponse"));
    expect(JSON.stringify(responses)).not.toContain("Access-Control");
    expect(Object.keys(off.template.findOutputs("*"))).not.toContain("DashboardUrl");
  });
});

describe("a missing bundle", () => {
  const empty = mkdtempSync(join(tmpdir(), "jobq-no-dashboard-"));
  afterAll(() => rmSync(empty, { recursive: true, force: true }));

  it("fails the synth, saying to build it or to turn the dashboard off", () => {
    const app = new App({ context: { "aws:cdk:bundling-stacks": [] } });
    const build = () =>
      new JobqStack(app, "Jobq", {
        handlersDir: stubHandlersDir(),
        functionsDir: stubFunctionsDir(),
        workerImage: stubWorkerImage(),
        dashboardPath: empty,
      });
    expect(build).toThrow(/npm run build:web.*jobq:dashboard=false/);
  });
});
