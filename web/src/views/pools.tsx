import type { ViewProps } from "./types";

/** Placeholder: the Pools view is written in its own branch and replaces this file at merge. */
export function PoolsView(_props: ViewProps) {
  return (
    <section aria-labelledby="pools-title">
      <h1 id="pools-title">Pools</h1>
      <p class="muted">Coming soon.</p>
    </section>
  );
}
