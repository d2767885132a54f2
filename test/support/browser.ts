import { existsSync } from "node:fs";

/**
 * The browser the dashboard's e2e tests drive: Debian's chromium through playwright-core, with
 * flags that keep it from contacting anything but loopback. Where there is no chromium the files
 * skip their browser tests (HAS_CHROMIUM) and say why once.
 */

export const CHROMIUM = process.env.JOBQ_CHROMIUM ?? "/usr/bin/chromium";

export const HAS_CHROMIUM = existsSync(CHROMIUM);
if (!HAS_CHROMIUM) {
  console.warn(
    `web dashboard tests skipped: no browser at ${CHROMIUM} (apt-get install -y chromium, or set JOBQ_CHROMIUM)`,
  );
}

/** Chromium must contact nothing: no Google services, and no name resolves but loopback's. */
export const CHROMIUM_ARGS: readonly string[] = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-gpu",
  "--no-first-run",
  "--disable-default-apps",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
];
