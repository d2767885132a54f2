import { JobqClient } from "../../client/index";

/**
 * Where the API and the stream are. In AWS the page is served from its own origin with a generated
 * `config.json` beside index.html; on the local stack there is none, the API shares the page's
 * origin, and GET /health names the stream.
 */
export interface DashboardConfig {
  readonly apiUrl: string;
  readonly streamUrl: string | undefined;
}

export async function loadConfig(): Promise<DashboardConfig> {
  const generated = await readConfigJson();
  if (generated) return generated;
  const apiUrl = window.location.origin;
  const health = await new JobqClient({ url: apiUrl }).health().catch(() => undefined);
  return { apiUrl, streamUrl: health?.streamUrl ? reachable(health.streamUrl) : undefined };
}

async function readConfigJson(): Promise<DashboardConfig | undefined> {
  try {
    const response = await fetch(new URL("config.json", window.location.href), {
      headers: { accept: "application/json" },
      cache: "no-cache",
    });
    if (!response.ok) return undefined;
    const body = (await response.json()) as { apiUrl?: unknown; streamUrl?: unknown };
    if (typeof body.apiUrl !== "string") return undefined;
    return {
      apiUrl: body.apiUrl,
      streamUrl: typeof body.streamUrl === "string" ? body.streamUrl : undefined,
    };
  } catch {
    // Locally config.json is the API's JSON 404 (or not JSON at all): use the page's origin.
    return undefined;
  }
}

/** A stack bound to every address names 0.0.0.0 in its stream URL; the browser reaches it as the page's host. */
function reachable(streamUrl: string): string {
  const url = new URL(streamUrl);
  if (url.hostname === "0.0.0.0" || url.hostname === "[::]") url.hostname = window.location.hostname;
  return url.toString();
}
