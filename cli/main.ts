#!/usr/bin/env -S npx tsx
import { run } from "./program";

// The `jobq` bin: the program with this process's arguments, environment and output. The exit
// code is set, not forced, so piped output is flushed before the process ends.
process.exitCode = await run(process.argv.slice(2), {
  out: process.stdout,
  err: process.stderr,
  env: process.env,
});
