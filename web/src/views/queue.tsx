import { useState } from "preact/hooks";
import type { QueueSnapshot } from "../../../client/index";
import { formatTime, relativeTime, shortId } from "../format";
import { ErrorNotice, TableHead, useLoad } from "../kit";
import { useLiveRefresh } from "../live";
import { jobHref } from "../router";
import { JobActions, PriorityChip, useAction } from "../ui";
import type { ViewProps } from "./types";

/**
 * The queue, per pool, in the order the scheduler would admit it (GET /queue). Admins reorder it
 * by dragging a job onto another (it goes just ahead of that one: PATCH /jobs/{id} {before}) or,
 * by keyboard, with the move buttons.
 */

type Entry = QueueSnapshot["queued"][number];

export function QueueView({ client, admin }: ViewProps) {
  const queue = useLoad(() => client.queue(), [client]);
  // Any status change can move the queue: a job queued, admitted, cancelled, re-prioritised.
  useLiveRefresh(queue.reload, undefined, 1000);
  const act = useAction();
  const [dragging, setDragging] = useState<string | undefined>();

  const moveBefore = (id: string, before: string) => {
    void act(`Move ${shortId(id)}`, () => client.updateJob(id, { before })).then(queue.reload);
  };

  if (!queue.data) {
    return queue.error ? (
      <ErrorNotice error={queue.error} retry={queue.reload} />
    ) : (
      <p aria-busy="true">Loading the queue…</p>
    );
  }
  const snapshot = queue.data;
  const byPool = new Map<string, Entry[]>();
  for (const pool of snapshot.pools) byPool.set(pool.name, []);
  for (const entry of snapshot.queued) {
    const pool = entry.pool ?? "any pool";
    byPool.set(pool, [...(byPool.get(pool) ?? []), entry]);
  }
  const counts = Object.entries(snapshot.counts).filter(([, n]) => (n ?? 0) > 0);

  return (
    <section aria-labelledby="queue-title">
      <div class="view-header">
        <h1 id="queue-title">Queue</h1>
        <ul class="counts" aria-label="Jobs by status">
          {counts.length === 0 && <li>no jobs</li>}
          {counts.map(([status, n]) => (
            <li key={status}>
              <span class={`status status-${status}`}>{status}</span> {n}
              {snapshot.countsComplete ? "" : "+"}
            </li>
          ))}
        </ul>
      </div>
      {queue.error !== undefined && <ErrorNotice error={queue.error} retry={queue.reload} />}
      {admin && (
        <p class="hint">
          Drag a job onto another to put it just ahead of that one (it takes that job's priority), or use the
          move buttons.
        </p>
      )}
      {[...byPool].map(([pool, entries]) => (
        <section key={pool} class="card" aria-labelledby={`pool-${pool}`}>
          <h2 id={`pool-${pool}`}>
            Pool {pool} <span class="muted">· {entries.length} queued</span>
          </h2>
          {entries.length === 0 ? (
            <p class="muted">Nothing waiting.</p>
          ) : (
            <table class="table queue-table">
              <caption class="visually-hidden">Queued jobs of pool {pool} in admission order</caption>
              <TableHead
                columns={["#", "Job", "Priority", "Owner", "Estimated start", "Why waiting", "Actions"]}
              />
              <tbody>
                {entries.map((entry, index) => (
                  <tr
                    key={entry.id}
                    data-job-id={entry.id}
                    class={dragging === entry.id ? "dragging" : undefined}
                    draggable={admin}
                    onDragStart={(event) => {
                      event.dataTransfer?.setData("text/plain", entry.id);
                      setDragging(entry.id);
                    }}
                    onDragEnd={() => setDragging(undefined)}
                    onDragOver={(event) => {
                      if (admin && dragging && dragging !== entry.id) event.preventDefault();
                    }}
                    onDrop={(event) => {
                      event.preventDefault();
                      const id = event.dataTransfer?.getData("text/plain") || dragging;
                      setDragging(undefined);
                      if (id && id !== entry.id) moveBefore(id, entry.id);
                    }}
                  >
                    <td data-label="Position">{entry.position}</td>
                    <td data-label="Job">
                      <div>
                        <a class="job-link" href={jobHref(entry.id)} title={entry.id}>
                          {shortId(entry.id)}
                        </a>{" "}
                        <span class="muted">{entry.type}</span>
                      </div>
                    </td>
                    <td data-label="Priority">
                      <PriorityChip priority={entry.priority} />
                    </td>
                    <td data-label="Owner">{entry.owner}</td>
                    <td data-label="Estimated start" title={formatTime(entry.estimatedStartAt)}>
                      {entry.estimatedStartAt ? relativeTime(entry.estimatedStartAt) : "unknown"}
                    </td>
                    <td data-label="Why waiting">
                      <div>
                        {entry.reasonCode && <code class="reason">{entry.reasonCode}</code>}{" "}
                        {entry.statusReason}
                      </div>
                    </td>
                    <td data-label="Actions">
                      <div class="actions">
                        {admin && (
                          <>
                            <button
                              type="button"
                              class="button icon"
                              disabled={index === 0}
                              aria-label={`Move ${entry.id} up`}
                              onClick={() => {
                                const above = entries[index - 1];
                                if (above) moveBefore(entry.id, above.id);
                              }}
                            >
                              ↑
                            </button>
                            <button
                              type="button"
                              class="button icon"
                              disabled={index === entries.length - 1}
                              aria-label={`Move ${entry.id} down`}
                              onClick={() => {
                                // "before" only puts a job ahead of another: moving this one down is
                                // moving the one below it up.
                                const below = entries[index + 1];
                                if (below) moveBefore(below.id, entry.id);
                              }}
                            >
                              ↓
                            </button>
                          </>
                        )}
                        <JobActions
                          client={client}
                          job={{ id: entry.id, status: "queued", priority: entry.priority }}
                          onDone={queue.reload}
                        />
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      ))}
    </section>
  );
}
