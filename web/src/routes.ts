/** Hash routes: `#/queue`, `#/jobs`, `#/jobs/<id>`, `#/pools`, `#/stats`, `#/schedules`, `#/admin`. */
export type Route =
  | { readonly name: "queue" | "jobs" | "pools" | "stats" | "schedules" | "admin" }
  | { readonly name: "job"; readonly id: string }
  | { readonly name: "unknown"; readonly path: string };

const PLAIN = new Set(["queue", "jobs", "pools", "stats", "schedules", "admin"]);

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#\/?/, "");
  if (path === "") return { name: "queue" };
  const [first, second, ...rest] = path.split("/");
  if (first === "jobs" && second && rest.length === 0) {
    try {
      return { name: "job", id: decodeURIComponent(second) };
    } catch {
      return { name: "unknown", path };
    }
  }
  if (first && !second && PLAIN.has(first)) return { name: first as "queue" };
  return { name: "unknown", path };
}

export function jobHref(id: string): string {
  return `#/jobs/${encodeURIComponent(id)}`;
}
