import type { ViewProps } from "./types";

/** Placeholder: the Schedules view is written in its own branch and replaces this file at merge. */
export function SchedulesView(_props: ViewProps) {
  return (
    <section aria-labelledby="schedules-title">
      <h1 id="schedules-title">Schedules</h1>
      <p class="muted">Coming soon.</p>
    </section>
  );
}
