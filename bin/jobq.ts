import { App } from "aws-cdk-lib";
import { DEFAULT_DASHBOARD_PATH, JobqStack, readSettings } from "../lib/jobq-stack";

/**
 * The built web dashboard (web/dist) that the stack deploys to S3 behind CloudFront.
 * MERGE(web build): once scripts/build-web.ts is in, this body becomes
 * `return ensureWebBuild();` (import { ensureWebBuild } from "../scripts/build-web"), so synth
 * builds web/dist when it is missing or stale. Until then synth deploys whatever web/dist holds,
 * and fails with "run `npm run build:web`" when it holds no index.html.
 */
async function dashboardBundle(): Promise<string> {
  return DEFAULT_DASHBOARD_PATH;
}

// Environment-agnostic on purpose: the account and region come from the CLI's credentials at
// deploy. A stack bound to an account would make the VPC look its availability zones up at synth
// (an AWS call); agnostic, it takes the first two of Fn::GetAZs and synth needs no account at all.
const app = new App();
// With -c jobq:dashboard=false (LocalStack) nothing is built or read.
const dashboardPath = readSettings(app.node).dashboard ? await dashboardBundle() : undefined;
new JobqStack(app, "Jobq", { description: "jobq: a job queue and scheduler", dashboardPath });
app.synth();
