import { existsSync } from "node:fs";
import { join } from "node:path";
import { Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as cloudfront from "aws-cdk-lib/aws-cloudfront";
import * as origins from "aws-cdk-lib/aws-cloudfront-origins";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import * as logs from "aws-cdk-lib/aws-logs";
import * as s3 from "aws-cdk-lib/aws-s3";
import * as s3deploy from "aws-cdk-lib/aws-s3-deployment";
import { Construct } from "constructs";

/** What the page fetches at start (web/): where the API and the job stream are. */
export interface DashboardConfig {
  /** The REST API's stage URL, ending in `/`. */
  readonly apiUrl: string;
  /** The WebSocket stage URL (`wss://…/<stage>`). */
  readonly streamUrl: string;
}

export interface WebDashboardProps extends DashboardConfig {
  /**
   * Directory of the built dashboard (`web/dist`, made by `npm run build:web`): index.html and
   * assets/. Construction fails if it has no index.html.
   */
  readonly dashboardPath: string;
  /**
   * Origins (scheme and host, no path) the page may connect to besides its own: the REST API's and
   * the WebSocket API's. They make the Content-Security-Policy's connect-src, and must not depend on
   * the API stages: the stages depend on the API functions, which get this distribution's origin.
   */
  readonly connectOrigins: readonly string[];
  /**
   * Edge locations serving the page.
   * @default cloudfront.PriceClass.PRICE_CLASS_100 (North America and Europe: the cheapest)
   */
  readonly priceClass?: cloudfront.PriceClass;
  /**
   * How long the logs of the function that copies the bundle (BucketDeployment's) are kept.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** The dashboard bundle's immutable files: Vite names them by content hash (web/vite.config.ts). */
const ASSETS_PATH = "/assets/*";
const YEAR = Duration.days(365);

/**
 * Why the synth stops when the bundle is missing, and the two ways on. Exported so the tests
 * and bin/jobq.ts say the same thing.
 */
export function missingBundleMessage(dashboardPath: string): string {
  return (
    `the web dashboard bundle ${join(dashboardPath, "index.html")} is missing: run \`npm run build:web\` ` +
    "first, or deploy without the dashboard (-c jobq:dashboard=false)"
  );
}

/** The Content-Security-Policy of every page response: own files only, and the jobq APIs. */
export function contentSecurityPolicy(connectOrigins: readonly string[]): string {
  return [
    "default-src 'self'",
    "script-src 'self'",
    // Inline style attributes: Preact's `style` props and uPlot's sizing write them; they run no script.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src 'self' ${connectOrigins.join(" ")}`,
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/**
 * The web dashboard in AWS: the built bundle and a generated config.json in a private S3 bucket
 * that only this CloudFront distribution may read (origin access control), served over HTTPS with
 * security headers. index.html and config.json are never cached, so a deploy shows at the next
 * page load without an invalidation; the hashed /assets/* are cached for a year.
 */
export class WebDashboard extends Construct {
  public readonly bucket: s3.Bucket;
  public readonly distribution: cloudfront.Distribution;
  public readonly deployment: s3deploy.BucketDeployment;
  /** `https://<distribution domain>`: the Origin the browser sends, for the API's CORS. */
  public readonly origin: string;
  /** The page: `https://<distribution domain>/`. */
  public readonly url: string;

  constructor(scope: Construct, id: string, props: WebDashboardProps) {
    super(scope, id);
    if (!existsSync(join(props.dashboardPath, "index.html"))) {
      throw new Error(missingBundleMessage(props.dashboardPath));
    }

    this.bucket = new s3.Bucket(this, "Bucket", {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // Only a build artifact lives here: the deployment below empties it on delete (retainOnDelete).
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const securityHeaders: cloudfront.ResponseSecurityHeadersBehavior = {
      contentSecurityPolicy: {
        contentSecurityPolicy: contentSecurityPolicy(props.connectOrigins),
        override: true,
      },
      contentTypeOptions: { override: true },
      frameOptions: { frameOption: cloudfront.HeadersFrameOption.DENY, override: true },
      referrerPolicy: { referrerPolicy: cloudfront.HeadersReferrerPolicy.NO_REFERRER, override: true },
      strictTransportSecurity: { accessControlMaxAge: YEAR, includeSubdomains: true, override: true },
    };
    const headersWithCaching = (policyId: string, cacheControl: string) =>
      new cloudfront.ResponseHeadersPolicy(this, policyId, {
        comment: `jobq dashboard: security headers, Cache-Control ${cacheControl}`,
        securityHeadersBehavior: securityHeaders,
        // What the browser keeps, whatever metadata the objects were uploaded with.
        customHeadersBehavior: {
          customHeaders: [{ header: "Cache-Control", value: cacheControl, override: true }],
        },
      });

    const origin = origins.S3BucketOrigin.withOriginAccessControl(this.bucket);
    this.distribution = new cloudfront.Distribution(this, "Distribution", {
      comment: "jobq web dashboard",
      defaultRootObject: "index.html",
      priceClass: props.priceClass ?? cloudfront.PriceClass.PRICE_CLASS_100,
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
      // index.html and config.json: tiny, and must change with a deploy; not cached at the edge
      // (so no invalidation to wait for) and revalidated by the browser.
      defaultBehavior: {
        origin,
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
        cachePolicy: cloudfront.CachePolicy.CACHING_DISABLED,
        responseHeadersPolicy: headersWithCaching("PageHeaders", "no-cache"),
        compress: true,
      },
      additionalBehaviors: {
        [ASSETS_PATH]: {
          origin,
          viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
          allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
          cachePolicy: cloudfront.CachePolicy.CACHING_OPTIMIZED,
          responseHeadersPolicy: headersWithCaching(
            "AssetHeaders",
            `public, max-age=${YEAR.toSeconds()}, immutable`,
          ),
          compress: true,
        },
      },
    });
    this.origin = `https://${this.distribution.distributionDomainName}`;
    this.url = `${this.origin}/`;

    const config: DashboardConfig = { apiUrl: props.apiUrl, streamUrl: props.streamUrl };
    this.deployment = new s3deploy.BucketDeployment(this, "Deployment", {
      destinationBucket: this.bucket,
      // config.json carries deploy-time values (the stage URLs), filled in by the deployment.
      sources: [s3deploy.Source.asset(props.dashboardPath), s3deploy.Source.jsonData("config.json", config)],
      // Old hashed assets go; the page that named them is never cached, so nothing asks for them.
      prune: true,
      retainOnDelete: false,
      memoryLimit: 256,
      // Not CDK's default log group, which keeps logs forever.
      logGroup: new logs.LogGroup(this, "DeploymentLogs", {
        retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
        removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
      }),
    });
    traceDeploymentHandler(this.deployment);
  }
}

/**
 * Active X-Ray tracing on BucketDeployment's handler, like every other function of the stack:
 * CDK offers no option for it, so it is set on the (singleton, stack-level) function itself, with
 * the X-Ray actions Lambda checks its role for.
 */
function traceDeploymentHandler(deployment: s3deploy.BucketDeployment): void {
  deployment.handlerRole.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
      // X-Ray's write actions take no resource.
      resources: ["*"],
    }),
  );
  for (const construct of Stack.of(deployment).node.findAll()) {
    if (
      construct instanceof lambda.CfnFunction &&
      construct.node.path.includes("/Custom::CDKBucketDeployment")
    )
      construct.tracingConfig = { mode: lambda.Tracing.ACTIVE };
  }
}
