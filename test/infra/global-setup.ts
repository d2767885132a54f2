import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Every CDK App synthesized without an outdir writes its assembly to a fresh `cdk.out*` folder
 * under the temp dir and leaves it there: ~1 MB per stack, hundreds per run. This run gets a temp
 * dir of its own (the test processes start after this setup and inherit TMPDIR), removed whole at
 * the end: choosing by modification time instead would delete the assemblies of another run that
 * started earlier on the same machine while it still reads them.
 */
export default function setup(): () => void {
  const previous = process.env.TMPDIR;
  const own = mkdtempSync(join(tmpdir(), "jobq-infra-"));
  process.env.TMPDIR = own;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    rmSync(own, { recursive: true, force: true });
  };
}
