import { App } from "aws-cdk-lib";
import { JobqStack } from "../lib/jobq-stack";

// Environment-agnostic unless the CLI knows the account and region: synth needs no AWS account,
// and nothing in the stack looks anything up.
const account = process.env.CDK_DEFAULT_ACCOUNT;
const region = process.env.CDK_DEFAULT_REGION;

const app = new App();
new JobqStack(app, "Jobq", {
  description: "jobq: a job queue and scheduler",
  env: account || region ? { account, region } : undefined,
});
app.synth();
