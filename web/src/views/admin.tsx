import type { ViewProps } from "./types";

/** Placeholder: the Admin view is written in its own branch and replaces this file at merge. */
export function AdminView(_props: ViewProps) {
  return (
    <section aria-labelledby="admin-title">
      <h1 id="admin-title">Admin</h1>
      <p class="muted">Coming soon.</p>
    </section>
  );
}
