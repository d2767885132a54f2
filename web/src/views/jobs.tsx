import { useState } from "preact/hooks";
import type { Job, ListJobsParams } from "../../../client/index";
import { formatTime, JOB_STATUSES, PRIORITY_NAMES, relativeTime, shortId } from "../format";
import { ErrorNotice, Pager, TableHead, useLoad } from "../kit";
import { useLiveRefresh } from "../live";
import { jobHref } from "../router";
import { JobActions, PriorityChip, StatusBadge } from "../ui";
import type { ViewProps } from "./types";

/** GET /jobs with its filters, newest first, a page at a time (cursor paging). */

interface Filters {
  readonly status: string;
  readonly type: string;
  readonly owner: string;
  readonly priority: string;
  readonly tag: string;
  readonly project: string;
  readonly createdAfter: string;
}

const NO_FILTERS: Filters = {
  status: "",
  type: "",
  owner: "",
  priority: "",
  tag: "",
  project: "",
  createdAfter: "",
};

function toParams(filters: Filters, cursor: string | undefined): ListJobsParams {
  const params: Record<string, string | number> = { limit: 50 };
  for (const [name, value] of Object.entries(filters)) {
    if (value.trim() === "") continue;
    // A datetime-local input has no zone: it means the browser's.
    params[name] = name === "createdAfter" ? new Date(value).toISOString() : value.trim();
  }
  if (cursor) params.cursor = cursor;
  return params as ListJobsParams;
}

export function JobsView({ client, admin }: ViewProps) {
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  // The cursors of the pages before this one: "previous" pops one.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors[cursors.length - 1];
  const page = useLoad(() => client.listJobs(toParams(filters, cursor)), [client, filters, cursor]);
  // The first page shows new jobs as they come; a later page updates the jobs it shows.
  useLiveRefresh(
    page.reload,
    (job) => cursor === undefined || (page.data?.items.some((j) => j.id === job.id) ?? false),
  );

  const field = (name: keyof Filters) => ({
    id: `filter-${name}`,
    value: draft[name],
    onInput: (event: Event) =>
      setDraft({ ...draft, [name]: (event.currentTarget as HTMLInputElement).value }),
  });

  return (
    <section aria-labelledby="jobs-title">
      <div class="view-header">
        <h1 id="jobs-title">Jobs</h1>
      </div>
      <form
        class="filters card"
        aria-label="Filter jobs"
        onSubmit={(event) => {
          event.preventDefault();
          setFilters(draft);
          setCursors([undefined]);
        }}
      >
        <div class="field">
          <label for="filter-status">Status</label>
          <select {...field("status")} onChange={field("status").onInput}>
            <option value="">any</option>
            <option value="queued,blocked,scheduled,retrying,paused">waiting</option>
            <option value="dispatched,running">running</option>
            {JOB_STATUSES.map((status) => (
              <option key={status} value={status}>
                {status}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="filter-type">Type</label>
          <input {...field("type")} placeholder="e.g. train-model" />
        </div>
        {admin && (
          <div class="field">
            <label for="filter-owner">Owner</label>
            <input {...field("owner")} placeholder="principal" />
          </div>
        )}
        <div class="field">
          <label for="filter-priority">Priority</label>
          <select {...field("priority")} onChange={field("priority").onInput}>
            <option value="">any</option>
            {PRIORITY_NAMES.map((p) => (
              <option key={p.name} value={p.name}>
                {p.name}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="filter-tag">Tag</label>
          <input {...field("tag")} placeholder="key:value" />
        </div>
        <div class="field">
          <label for="filter-project">Project</label>
          <input {...field("project")} />
        </div>
        <div class="field">
          <label for="filter-createdAfter">Created after</label>
          <input type="datetime-local" {...field("createdAfter")} />
        </div>
        <div class="field field-buttons">
          <button type="submit" class="button button-primary">
            Apply
          </button>
          <button
            type="button"
            class="button"
            onClick={() => {
              setDraft(NO_FILTERS);
              setFilters(NO_FILTERS);
              setCursors([undefined]);
            }}
          >
            Clear
          </button>
        </div>
      </form>
      {page.error !== undefined && <ErrorNotice error={page.error} retry={page.reload} />}
      {!page.data && page.error === undefined && <p aria-busy="true">Loading jobs…</p>}
      {page.data && <JobTable jobs={page.data.items} client={client} onChanged={page.reload} />}
      <Pager
        label="Pages"
        cursors={cursors}
        onCursors={setCursors}
        nextCursor={page.data?.nextCursor}
        previousText="Newer"
        nextText="Older"
      />
    </section>
  );
}

function JobTable(props: {
  readonly jobs: readonly Job[];
  readonly client: ViewProps["client"];
  readonly onChanged: () => void;
}) {
  if (props.jobs.length === 0) return <p class="card muted">No jobs match.</p>;
  return (
    <table class="table">
      <caption class="visually-hidden">Jobs, newest first</caption>
      <TableHead columns={["Job", "Status", "Priority", "Owner", "Pool", "Created", "Actions"]} />
      <tbody>
        {props.jobs.map((job) => (
          <tr key={job.id} data-job-id={job.id}>
            <td data-label="Job">
              <div>
                <a class="job-link" href={jobHref(job.id)} title={job.id}>
                  {job.name ?? shortId(job.id)}
                </a>{" "}
                <span class="muted">{job.type}</span>
              </div>
            </td>
            <td data-label="Status">
              <div>
                <StatusBadge status={job.status} /> <span class="muted small">{job.statusReason}</span>
              </div>
            </td>
            <td data-label="Priority">
              <PriorityChip priority={job.priority} />
            </td>
            <td data-label="Owner">{job.owner}</td>
            <td data-label="Pool">{job.pool ?? "any"}</td>
            <td data-label="Created" title={formatTime(job.createdAt)}>
              {relativeTime(job.createdAt)}
            </td>
            <td data-label="Actions">
              <JobActions client={props.client} job={job} onDone={props.onChanged} withPriority={false} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
