import { App } from "aws-cdk-lib";
import { JobqStack } from "../lib/jobq-stack";

// Environment-agnostic on purpose: the account and region come from the CLI's credentials at
// deploy. A stack bound to an account would make the VPC look its availability zones up at synth
// (an AWS call); agnostic, it takes the first two of Fn::GetAZs and synth needs no account at all.
const app = new App();
new JobqStack(app, "Jobq", { description: "jobq: a job queue and scheduler" });
app.synth();
