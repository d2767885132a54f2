import { createHash } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The dashboard's build, in one place for everyone who needs the bundle: `npm start`
 * (local/main.ts), the integration tests' global setup, `npm run build:web`, and the CDK app
 * that uploads it. A build costs seconds of CPU, so it is skipped when web/dist was built from
 * exactly the sources there are now: a hash of web/'s sources, the client it bundles, and the
 * lockfile (the versions of vite and preact) is written into web/dist and compared.
 */

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WEB = join(ROOT, "web");
export const WEB_DIST = join(WEB, "dist");
const STAMP = join(WEB_DIST, ".source-hash");
/** What the bundle is made of: the dashboard, the client and the domain types it imports. */
const SOURCES = [WEB, join(ROOT, "client"), join(ROOT, "core")];
const LOCKFILE = join(ROOT, "package-lock.json");
const SKIPPED = new Set(["dist", "node_modules"]);

export interface WebBuildOptions {
  /** Build even when web/dist matches the sources. @default false */
  readonly force?: boolean;
  /** Say on stdout when it builds. @default false */
  readonly log?: boolean;
}

/** Builds the dashboard when web/dist is missing or stale; resolves to web/dist. */
export async function ensureWebBuild(options: WebBuildOptions = {}): Promise<string> {
  const hash = await sourceHash();
  if (!options.force && (await readFile(STAMP, "utf8").catch(() => "")) === hash) return WEB_DIST;
  if (options.log) process.stdout.write("jobq: building the web dashboard (web/dist)…\n");
  // Imported here: a start with a built dashboard does not load vite at all.
  const { build } = await import("vite");
  await build({ configFile: join(WEB, "vite.config.ts"), logLevel: options.log ? "info" : "warn" });
  await writeFile(STAMP, hash);
  return WEB_DIST;
}

async function sourceHash(): Promise<string> {
  const hash = createHash("sha256");
  const files = (await Promise.all(SOURCES.map(listFiles))).flat().sort();
  for (const file of [...files, LOCKFILE]) {
    hash
      .update(relative(ROOT, file))
      .update("\0")
      .update(await readFile(file))
      .update("\0");
  }
  return hash.digest("hex");
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries
      .filter((entry) => !SKIPPED.has(entry.name))
      .map((entry) => {
        const path = join(dir, entry.name);
        return entry.isDirectory() ? listFiles(path) : Promise.resolve(entry.isFile() ? [path] : []);
      }),
  );
  return nested.flat();
}

// `npm run build:web` (`-- --force` builds even when web/dist is current).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  ensureWebBuild({ force: process.argv.includes("--force"), log: true }).then(
    (dir) => process.stdout.write(`jobq: the dashboard is in ${dir}\n`),
    (error: unknown) => {
      console.error("jobq: the dashboard build failed", error);
      process.exit(1);
    },
  );
}
