import { readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Every CDK App synthesized without an outdir writes its assembly to a fresh `cdk.out*` folder
 * under the temp dir and leaves it there: ~1 MB per stack, hundreds per run. At the end of the
 * infra tier, remove the ones this run created.
 */
export default function setup(): () => void {
  const startedAt = Date.now();
  return () => {
    const dir = tmpdir();
    for (const name of readdirSync(dir)) {
      if (!name.startsWith("cdk.out")) continue;
      const path = join(dir, name);
      try {
        if (statSync(path).mtimeMs >= startedAt) rmSync(path, { recursive: true, force: true });
      } catch {
        // Gone already, or another run's: not ours to worry about.
      }
    }
  };
}
