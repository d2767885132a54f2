import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join } from "node:path";

/**
 * The dashboard's static files on the local API's port, as CloudFront serves them in AWS:
 * `/` (index.html) and `/assets/<file>` only, nothing else, so every other unknown path stays
 * the API's JSON 404. Vite names assets by their content's hash, so they are cached for good;
 * index.html, which names them, is revalidated every time.
 */

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".json": "application/json; charset=utf-8",
};

const IMMUTABLE = "public, max-age=31536000, immutable";
const REVALIDATE = "no-cache";
/**
 * The page loads only its own scripts and styles and talks to its own origin (locally the API
 * and the stream share it); style attributes are allowed for the bars and colours it draws.
 */
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/** One flat file name of vite's output: no separators, no `..`, no hidden files. */
const ASSET_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/**
 * Answers a GET or HEAD of `/` or `/assets/<name>` from dir and returns true; returns false
 * (answering nothing) for every other request, and for an asset that does not exist, so the API
 * answers those as it always has.
 */
export async function serveWebAsset(
  request: IncomingMessage,
  response: ServerResponse,
  path: string,
  dir: string,
): Promise<boolean> {
  if (request.method !== "GET" && request.method !== "HEAD") return false;
  let file: string;
  let cacheControl: string;
  if (path === "/") {
    file = join(dir, "index.html");
    cacheControl = REVALIDATE;
  } else if (path.startsWith("/assets/")) {
    const name = path.slice("/assets/".length);
    // The raw path is matched, undecoded: `%2e%2e` or `%2f` is no file name vite writes.
    if (!ASSET_NAME.test(name) || name.includes("..")) return false;
    file = join(dir, "assets", name);
    cacheControl = IMMUTABLE;
  } else return false;
  const size = await stat(file).then(
    (found) => (found.isFile() ? found.size : undefined),
    () => undefined,
  );
  if (size === undefined) return false;
  request.resume();
  response.statusCode = 200;
  response.setHeader("content-type", CONTENT_TYPES[extname(file)] ?? "application/octet-stream");
  response.setHeader("content-length", size);
  response.setHeader("cache-control", cacheControl);
  response.setHeader("x-content-type-options", "nosniff");
  if (path === "/") {
    response.setHeader("content-security-policy", CONTENT_SECURITY_POLICY);
    response.setHeader("referrer-policy", "no-referrer");
  }
  if (request.method === "HEAD") {
    response.end();
    return true;
  }
  await new Promise<void>((done, fail) => {
    createReadStream(file).on("error", fail).pipe(response).on("finish", done).on("error", fail);
  });
  return true;
}
