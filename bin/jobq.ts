import { App } from "aws-cdk-lib";
import { JobqStack, readSettings } from "../lib/jobq-stack";
import { ensureWebBuild } from "../scripts/build-web";

// Environment-agnostic on purpose: the account and region come from the CLI's credentials at
// deploy. A stack bound to an account would make the VPC look its availability zones up at synth
// (an AWS call); agnostic, it takes the first two of Fn::GetAZs and synth needs no account at all.
const app = new App();
// The dashboard's bundle (web/dist), built when it is missing or older than its sources; with
// -c jobq:dashboard=false (LocalStack) nothing is built or read.
const dashboardPath = readSettings(app.node).dashboard ? await ensureWebBuild() : undefined;
new JobqStack(app, "Jobq", { description: "jobq: a job queue and scheduler", dashboardPath });
app.synth();
