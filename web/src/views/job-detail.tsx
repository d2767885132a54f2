import { useEffect, useRef, useState } from "preact/hooks";
import type { JobqClient, JobView, LogLine, Page } from "../../../client/index";
import {
  formatDuration,
  formatTime,
  formatUsd,
  isTerminal,
  priorityLabel,
  relativeTime,
  shortId,
} from "../format";
import { ErrorNotice, Pager, TableHead, useLoad } from "../kit";
import { useLiveRefresh } from "../live";
import { jobHref } from "../router";
import { JobActions, PriorityChip, StatusBadge } from "../ui";
import type { ViewProps } from "./types";

/**
 * One job: what it is and why it is where it is, its transitions, its attempts, its log (followed
 * while it runs), its result, and its place in the DAG (what it waits on, what waits on it).
 */

interface Neighbour {
  readonly id: string;
  readonly status: string | undefined;
  readonly label: string;
  readonly note?: string;
}

/** The most pages of transitions or logs one read follows: enough for any job a person reads. */
const MAX_PAGES = 10;
const LOG_FOLLOW_MS = 2000;

async function allPages<T>(read: (cursor: string | undefined) => Promise<Page<T>>): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const answer = await read(cursor);
    items.push(...answer.items);
    if (!answer.nextCursor) break;
    cursor = answer.nextCursor;
  }
  return items;
}

async function loadDetail(client: JobqClient, id: string) {
  const [job, transitions, attempts, dependents] = await Promise.all([
    client.getJob(id),
    allPages((cursor) => client.transitions(id, { limit: 200, cursor })),
    allPages((cursor) => client.attempts(id, { limit: 200, cursor })),
    allPages((cursor) => client.dependents(id, { limit: 200, cursor })),
  ]);
  const dependencies = await Promise.all(
    job.dependsOn.slice(0, 50).map((parent) =>
      client.getJob(parent).then(
        (found): Neighbour => ({ id: parent, status: found.status, label: found.name ?? found.type }),
        (): Neighbour => ({ id: parent, status: undefined, label: "not visible" }),
      ),
    ),
  );
  return { job, transitions, attempts, dependents, dependencies };
}

export function JobDetailView({ client, id }: ViewProps & { readonly id: string }) {
  const detail = useLoad(() => loadDetail(client, id), [client, id]);
  const related = (jobId: string) =>
    jobId === id ||
    (detail.data?.job.dependsOn.includes(jobId) ?? false) ||
    (detail.data?.dependents.some((d) => d.id === jobId) ?? false);
  useLiveRefresh(detail.reload, (job) => related(job.id));

  if (!detail.data) {
    if (detail.error !== undefined) return <ErrorNotice error={detail.error} retry={detail.reload} />;
    return <p aria-busy="true">Loading job {id}…</p>;
  }
  const { job, transitions, attempts, dependents, dependencies } = detail.data;
  return (
    <article aria-labelledby="job-title">
      <div class="view-header">
        <h1 id="job-title">
          {job.name ?? job.type} <span class="muted mono small">{job.id}</span>
        </h1>
        <JobActions client={client} job={job} onDone={detail.reload} />
      </div>
      {detail.error !== undefined && <ErrorNotice error={detail.error} retry={detail.reload} />}
      <section class="card summary" aria-label="Summary">
        <dl class="facts">
          <div>
            <dt>Status</dt>
            <dd>
              <StatusBadge status={job.status} /> {job.statusReason}
            </dd>
          </div>
          <div>
            <dt>Priority</dt>
            <dd>
              <PriorityChip priority={job.priority} />
            </dd>
          </div>
          <div>
            <dt>Type</dt>
            <dd>{job.type}</dd>
          </div>
          <div>
            <dt>Owner</dt>
            <dd>{job.owner}</dd>
          </div>
          <div>
            <dt>Pool</dt>
            <dd>{job.pool ?? "any that fits"}</dd>
          </div>
          <div>
            <dt>Resources</dt>
            <dd>
              {job.resources.cpu} CPU · {job.resources.memoryMb} MB · {job.resources.gpu} GPU
            </dd>
          </div>
          <div>
            <dt>Attempts</dt>
            <dd>
              {job.attempts} of {job.retry.maxAttempts}
            </dd>
          </div>
          {job.queuePosition != null && (
            <div>
              <dt>Queue position</dt>
              <dd>
                {job.queuePosition}
                {job.estimatedStartAt ? `, starts about ${formatTime(job.estimatedStartAt)}` : ""}
              </dd>
            </div>
          )}
          <div>
            <dt>Created</dt>
            <dd>{formatTime(job.createdAt)}</dd>
          </div>
          <div>
            <dt>Started</dt>
            <dd>{formatTime(job.startedAt)}</dd>
          </div>
          <div>
            <dt>Finished</dt>
            <dd>{formatTime(job.finishedAt)}</dd>
          </div>
          {job.project && (
            <div>
              <dt>Project</dt>
              <dd>{job.project}</dd>
            </div>
          )}
          {job.arrayParentId && (
            <div>
              <dt>Array</dt>
              <dd>
                child {job.arrayIndex ?? "?"} of <a href={jobHref(job.arrayParentId)}>{job.arrayParentId}</a>
              </dd>
            </div>
          )}
          {job.escalatedTo && (
            <div>
              <dt>Escalated to</dt>
              <dd>
                <a href={jobHref(job.escalatedTo)}>{job.escalatedTo}</a>
              </dd>
            </div>
          )}
        </dl>
      </section>

      {job.array ? <ArrayChildren client={client} job={job} /> : null}

      <section class="card" aria-labelledby="dag-title">
        <h2 id="dag-title">Dependencies</h2>
        <div class="dag">
          <NodeColumn
            title="Waits on"
            empty="no dependencies"
            nodes={dependencies}
            more={job.dependsOn.length - dependencies.length}
          />
          <div class="dag-arrow" aria-hidden="true">
            →
          </div>
          <div class="dag-column">
            <h3>This job</h3>
            <div class={`dag-node dag-self status-edge-${job.status}`}>
              <span>{job.name ?? job.type}</span>
              <StatusBadge status={job.status} />
            </div>
          </div>
          <div class="dag-arrow" aria-hidden="true">
            →
          </div>
          <NodeColumn
            title="Needed by"
            empty="no dependents"
            nodes={dependents.map((d) => ({
              id: d.id,
              status: d.status,
              label: d.name ?? d.type ?? shortId(d.id),
              note: d.met === undefined ? undefined : d.met ? "edge met" : "waiting on this job",
            }))}
            more={0}
          />
        </div>
      </section>

      <section class="card" aria-labelledby="timeline-title">
        <h2 id="timeline-title">Timeline</h2>
        <ol class="timeline">
          {transitions.map((t, index) => (
            <li key={`${t.at}-${index}`}>
              <time dateTime={t.at}>{formatTime(t.at)}</time>{" "}
              {t.fromPriority != null && t.toPriority != null ? (
                <span>
                  priority {priorityLabel(t.fromPriority)} → {priorityLabel(t.toPriority)}
                </span>
              ) : (
                <span>
                  {t.from ? <StatusBadge status={t.from} /> : "submitted"} → <StatusBadge status={t.to} />
                </span>
              )}{" "}
              <span class="muted">
                {t.reason}
                {t.triggeredBy ? ` (by ${t.triggeredBy})` : ""}
              </span>
            </li>
          ))}
        </ol>
      </section>

      <section class="card" aria-labelledby="attempts-title">
        <h2 id="attempts-title">Attempts</h2>
        {attempts.length === 0 ? (
          <p class="muted">No attempt yet.</p>
        ) : (
          <table class="table">
            <caption class="visually-hidden">Attempts of {job.id}</caption>
            <TableHead columns={["#", "Status", "Node", "Started", "Duration", "Error"]} />
            <tbody>
              {attempts.map((a) => (
                <tr key={a.attempt}>
                  <td data-label="Attempt">{a.attempt}</td>
                  <td data-label="Status">
                    <span class={`status status-attempt-${a.status}`}>{a.status}</span>
                  </td>
                  <td data-label="Node">
                    {a.nodeId ?? "—"}
                    {a.pool ? <span class="muted"> ({a.pool})</span> : null}
                  </td>
                  <td data-label="Started">{formatTime(a.startedAt)}</td>
                  <td data-label="Duration">{formatDuration(a.durationMs)}</td>
                  <td data-label="Error">{a.error ? `${a.error.type}: ${a.error.message}` : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      {job.cost ? <CostCard cost={job.cost} /> : null}

      <LogTail client={client} id={job.id} following={!isTerminal(job.status)} />

      <section class="card" aria-labelledby="result-title">
        <h2 id="result-title">{job.error ? "Error" : "Result"}</h2>
        {job.error ? (
          <pre class="code">{`${job.error.type}: ${job.error.message}`}</pre>
        ) : job.result === null || job.result === undefined ? (
          <p class="muted">{isTerminal(job.status) ? "No result." : "Not finished yet."}</p>
        ) : (
          <pre class="code">{JSON.stringify(job.result, null, 2)}</pre>
        )}
        <details>
          <summary>Payload</summary>
          <pre class="code">{JSON.stringify(job.payload, null, 2)}</pre>
        </details>
      </section>
    </article>
  );
}

function NodeColumn(props: {
  readonly title: string;
  readonly empty: string;
  readonly nodes: readonly Neighbour[];
  readonly more: number;
}) {
  return (
    <div class="dag-column">
      <h3>{props.title}</h3>
      {props.nodes.length === 0 && <p class="muted">{props.empty}</p>}
      <ul class="dag-list">
        {props.nodes.map((node) => (
          <li key={node.id}>
            <a
              class={`dag-node status-edge-${node.status ?? "unknown"}`}
              href={jobHref(node.id)}
              title={node.id}
            >
              <span>{node.label}</span>
              {node.status ? <StatusBadge status={node.status} /> : <span class="muted">?</span>}
              {node.note && <span class="muted small">{node.note}</span>}
            </a>
          </li>
        ))}
      </ul>
      {props.more > 0 && <p class="muted">and {props.more} more</p>}
    </div>
  );
}

interface LogProgress {
  readonly id: string;
  readonly settled: readonly LogLine[];
  readonly tailCursor: string | undefined;
}

/** The job's log; re-read every couple of seconds while the job can still write to it. */
function LogTail(props: { readonly client: JobqClient; readonly id: string; readonly following: boolean }) {
  const { client, id, following } = props;
  // While following, pages that were full (they had a next page) are kept and only the last one
  // is read again: a long log costs one request per poll, not one per page.
  const progress = useRef<LogProgress>({ id, settled: [], tailCursor: undefined });
  const logs = useLoad(async () => {
    if (progress.current.id !== id) progress.current = { id, settled: [], tailCursor: undefined };
    const settled = [...progress.current.settled];
    let cursor = progress.current.tailCursor;
    for (let page = 0; page < MAX_PAGES; page++) {
      const answer = await client.logs(id, { limit: 200, cursor });
      if (!answer.nextCursor) {
        progress.current = { id, settled, tailCursor: cursor };
        return [...settled, ...answer.items];
      }
      settled.push(...answer.items);
      cursor = answer.nextCursor;
    }
    progress.current = { id, settled, tailCursor: cursor };
    return settled;
  }, [client, id]);
  const [stick, setStick] = useState(true);
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    // One whole read after it ends: the last lines land with (or just after) the final status,
    // and a line written late with an earlier time may sit in a page kept while following.
    if (!following) progress.current = { id, settled: [], tailCursor: undefined };
    logs.reload();
    if (!following) return;
    const timer = setInterval(logs.reload, LOG_FOLLOW_MS);
    return () => clearInterval(timer);
  }, [following]);
  const lines: LogLine[] = logs.data ?? [];
  useEffect(() => {
    if (stick && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines.length, stick]);
  return (
    <section class="card" aria-labelledby="logs-title">
      <div class="view-header">
        <h2 id="logs-title">Log {following && <span class="muted small">(following)</span>}</h2>
        <label class="inline-field">
          <input
            type="checkbox"
            checked={stick}
            onChange={(e) => setStick((e.currentTarget as HTMLInputElement).checked)}
          />{" "}
          Keep at the end
        </label>
      </div>
      {logs.error !== undefined && <ErrorNotice error={logs.error} retry={logs.reload} />}
      {lines.length === 0 ? (
        <p class="muted">{logs.loading ? "Loading…" : "No log lines yet."}</p>
      ) : (
        // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must take focus for the keyboard to scroll it (WCAG 2.1.1)
        <div class="log" ref={box} role="log" aria-live="off" tabIndex={0} aria-label={`Log of ${id}`}>
          {lines.map((line, index) => (
            <div key={index} class={`log-line log-${line.level}`}>
              <span class="muted">{formatTime(line.timestamp)}</span>{" "}
              {line.attempt !== null && <span class="muted">#{line.attempt} </span>}
              <span class="log-level">{line.level}</span> {line.message}
            </div>
          ))}
        </div>
      )}
    </section>
  );
}

type JobCost = NonNullable<JobView["cost"]>;

/** Up to 3 decimals, without trailing zeros: counts of units and seconds. */
const units = (value: number): string => String(Math.round(value * 1000) / 1000);

/** What the job's life has cost so far: the total, then each part of the AWS bill (docs/cost.md). */
function CostCard(props: { readonly cost: JobCost }) {
  const { cost } = props;
  const b = cost.breakdown;
  const rows: readonly (readonly [string, string, number])[] = [
    ["Step Functions", `${units(b.stepFunctions.transitions)} state transitions`, b.stepFunctions.usd],
    [
      "DynamoDB",
      `${units(b.dynamodb.writeUnits)} write units, ${units(b.dynamodb.readUnits)} read units`,
      b.dynamodb.usd,
    ],
    ["SQS", `${units(b.sqs.requests)} requests`, b.sqs.usd],
    [
      "Lambda",
      `${units(b.lambda.invocations)} invocations, ${units(b.lambda.gbSeconds)} GB-seconds`,
      b.lambda.usd,
    ],
    ["EventBridge", `${units(b.eventBridge.entries)} entries`, b.eventBridge.usd],
    ["API", `${units(b.api.requests)} requests`, b.api.usd],
    [
      "Compute",
      `${units(b.compute.nodeSeconds)} node-seconds × ${formatUsd(b.compute.hourlyUsd)}/h × share ${units(b.compute.share)}`,
      b.compute.usd,
    ],
  ];
  return (
    <section class="card" aria-labelledby="cost-title">
      <h2 id="cost-title">Cost</h2>
      <dl class="facts">
        <div>
          <dt>Total</dt>
          <dd>{formatUsd(cost.totalUsd)}</dd>
        </div>
        <div>
          <dt>AWS requests</dt>
          <dd>{formatUsd(cost.requestsUsd)}</dd>
        </div>
        <div>
          <dt>Compute</dt>
          <dd>{formatUsd(cost.computeUsd)}</dd>
        </div>
        <div>
          <dt>Price table</dt>
          <dd>{cost.priceTable}</dd>
        </div>
      </dl>
      <table class="table">
        <caption class="visually-hidden">Cost of the job by service</caption>
        <TableHead columns={["Service", "Usage", "Cost"]} />
        <tbody>
          {rows.map(([service, usage, usd]) => (
            <tr key={service}>
              <td data-label="Service">{service}</td>
              <td data-label="Usage">{usage}</td>
              <td data-label="Cost">{formatUsd(usd)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

const CHILDREN_PAGE = 50;

/** An array job's children (GET /jobs/{id}/children), a page at a time, each linking to its own page. */
function ArrayChildren(props: { readonly client: JobqClient; readonly job: JobView }) {
  const { client, job } = props;
  const array = job.array;
  // The cursors of the pages before this one: "previous" pops one.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors[cursors.length - 1];
  const page = useLoad(
    () => client.children(job.id, { limit: CHILDREN_PAGE, cursor }),
    [client, job.id, cursor, job.version],
  );
  if (!array) return null;
  const counts = Object.entries(array.counts ?? {})
    .filter(([, n]) => (n ?? 0) > 0)
    .sort(([a], [b]) => a.localeCompare(b));
  return (
    <section class="card" aria-labelledby="children-title">
      <h2 id="children-title">Children</h2>
      <p>
        {array.size} children, {array.pending} not yet completed
        {counts.length > 0 ? ": " : "."}
        {counts.map(([status, n], index) => (
          <span key={status}>
            {index > 0 ? ", " : ""}
            {n} <StatusBadge status={status} />
          </span>
        ))}
      </p>
      {page.error !== undefined && <ErrorNotice error={page.error} retry={page.reload} />}
      {page.data === undefined ? (
        page.error === undefined ? (
          <p aria-busy="true">Loading children…</p>
        ) : null
      ) : (
        <table class="table">
          <caption class="visually-hidden">Children of {job.id}</caption>
          <TableHead columns={["Index", "Job", "Status", "Attempts", "Created"]} />
          <tbody>
            {page.data.items.map((child) => (
              <tr key={child.id} data-job-id={child.id}>
                <td data-label="Index">{child.arrayIndex ?? "—"}</td>
                <td data-label="Job">
                  <a class="job-link mono" href={jobHref(child.id)} title={child.id}>
                    {child.id}
                  </a>
                </td>
                <td data-label="Status">
                  <div>
                    <StatusBadge status={child.status} />{" "}
                    <span class="muted small">{child.statusReason}</span>
                  </div>
                </td>
                <td data-label="Attempts">
                  {child.attempts} of {child.retry.maxAttempts}
                </td>
                <td data-label="Created" title={formatTime(child.createdAt)}>
                  {relativeTime(child.createdAt)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager
        label="Pages of children"
        cursors={cursors}
        onCursors={setCursors}
        nextCursor={page.data?.nextCursor}
        previousText="Previous"
        nextText="Next"
      />
    </section>
  );
}
