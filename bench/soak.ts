/**
 * `npm run soak`: the local stack under a mixed load with worker kills, a hard kill and restart,
 * and injected throttling; prints the invariants it checked and exits 1 when one is broken.
 * bench/soak-harness.ts says what it does and checks.
 *
 *   npm run soak                                   # 2,000 jobs, 4 kills, 1 restart, 5 % throttling
 *   npm run soak -- --jobs 500 --kills 2 --restarts 1 --throttle 0.05          # the npm test one
 *   npm run soak -- --jobs 10000 --kills 20 --restarts 1 --throttle 0.1        # the long one
 */
import { parseArgs } from "node:util";
import { DEFAULT_SOAK_OPTIONS, runSoak } from "./soak-harness";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: String(DEFAULT_SOAK_OPTIONS.jobs) },
    kills: { type: "string", default: String(DEFAULT_SOAK_OPTIONS.workerKills) },
    restarts: { type: "string", default: String(DEFAULT_SOAK_OPTIONS.restarts) },
    throttle: { type: "string", default: String(DEFAULT_SOAK_OPTIONS.throttleRate) },
    "in-flight": { type: "string", default: String(DEFAULT_SOAK_OPTIONS.inFlight) },
    seed: { type: "string", default: String(DEFAULT_SOAK_OPTIONS.seed) },
    "drain-timeout": { type: "string", default: String(DEFAULT_SOAK_OPTIONS.drainTimeoutSeconds) },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  process.stdout.write(
    [
      "usage: npm run soak -- [options]",
      "  --jobs N            jobs to submit, DAG members included (default 2000)",
      "  --kills N           worker processes SIGKILLed during the run (default 4)",
      "  --restarts N        hard kills of the whole stack, each followed by a restart on the same data (default 1)",
      "  --throttle RATE     share of AWS SDK requests throttled, 0..1 (JOBQ_FAULT_THROTTLE_RATE; default 0.05)",
      "  --in-flight N       submissions in flight (default 16)",
      "  --seed N            seeds the job mix and the kill choices (default 1)",
      "  --drain-timeout S   seconds the jobs may take to end (default 600)",
      "  --keep              keep the data directory and the stack log (kept anyway when an invariant fails)",
      "",
    ].join("\n"),
  );
  process.exit(0);
}

function number(name: string, raw: string, min: number, max: number, integer = true): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    process.stderr.write(
      `soak: --${name} must be ${integer ? "an integer" : "a number"} from ${min} to ${max}\n`,
    );
    process.exit(2);
  }
  return value;
}

// Through process.exit, so that the harness's exit hook stops the stack it started.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));

const report = await runSoak({
  jobs: number("jobs", values.jobs, 1, 1_000_000),
  workerKills: number("kills", values.kills, 0, 1_000),
  restarts: number("restarts", values.restarts, 0, 20),
  throttleRate: number("throttle", values.throttle, 0, 0.9, false),
  inFlight: number("in-flight", values["in-flight"], 1, 256),
  seed: number("seed", values.seed, 0, 2 ** 31),
  drainTimeoutSeconds: number("drain-timeout", values["drain-timeout"], 10, 86_400),
  keep: values.keep,
});
process.stdout.write(`${report.summary}\n`);
process.exit(report.ok ? 0 : 1);
