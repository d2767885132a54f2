import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll } from "vitest";

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

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".css": "text/css",
};

/** A dashboard fixture page built and served, with the browser that opens it. */
export interface FixturePage {
  /** The started browser; throws before the file's beforeAll has run. */
  readonly browser: Browser;
  /** `http://127.0.0.1:<port>`: the page and the API behind it, on one origin. */
  readonly origin: string;
}

/**
 * Builds a fixture page (a small page that mounts dashboard views alone) with vite, serves it
 * with the local stack's API behind it on one origin (no CORS: as the stack serves the
 * dashboard), and starts chromium, once per test file; all of it goes at the file's end. Without
 * chromium nothing starts (the file's tests skip on HAS_CHROMIUM).
 */
export function useFixturePage(fixture: string, apiUrl: () => string, label: string): FixturePage {
  const repo = fileURLToPath(new URL("../../", import.meta.url));
  let outDir = "";
  let server: http.Server | undefined;
  let origin = "";
  let browser: Browser | undefined;

  beforeAll(async () => {
    if (!HAS_CHROMIUM) return;
    outDir = await mkdtemp(join(tmpdir(), `jobq-${label}-`));
    await build({
      configFile: false,
      root: fixture,
      base: "./",
      logLevel: "silent",
      esbuild: { jsx: "automatic", jsxImportSource: "preact" },
      server: { fs: { allow: [repo] } },
      build: { outDir, emptyOutDir: true, target: "es2022" },
    });
    const api = new URL(apiUrl());
    server = http.createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      if (path === "/" || path.startsWith("/assets/")) {
        const file = join(outDir, path === "/" ? "index.html" : path);
        readFile(file).then(
          (body) => {
            res.writeHead(200, {
              "content-type": CONTENT_TYPES[extname(file)] ?? "application/octet-stream",
            });
            res.end(body);
          },
          () => {
            res.writeHead(404);
            res.end();
          },
        );
        return;
      }
      const upstream = http.request(
        { host: api.hostname, port: api.port, path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on("error", (error) => {
        res.writeHead(502);
        res.end(String(error));
      });
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (outDir !== "") await rm(outDir, { recursive: true, force: true });
  });

  return {
    get browser(): Browser {
      if (!browser) throw new Error("the browser has not started");
      return browser;
    },
    get origin(): string {
      return origin;
    },
  };
}
