import type { ViewProps } from "./types";

/** Placeholder: the Stats view is written in its own branch and replaces this file at merge. */
export function StatsView(_props: ViewProps) {
  return (
    <section aria-labelledby="stats-title">
      <h1 id="stats-title">Stats</h1>
      <p class="muted">Coming soon.</p>
    </section>
  );
}
