import type { ComponentChildren } from "preact";
import { useRef, useState } from "preact/hooks";
import type { Page, Schedule } from "../../../client/index";
import { describeError, problemsAt, unclaimedProblems } from "../errors";
import {
  ConfirmAction,
  ErrorNotice,
  Loading,
  type Outcome,
  OutcomeNotice,
  RefreshTools,
  TableHead,
  useLoad,
  useSubmission,
  ViewFrame,
} from "../kit";
import {
  describeFire,
  EMPTY_SCHEDULE_FORM,
  formatTime,
  relativeTime,
  type ScheduleForm,
  scheduleRequest,
} from "./schedules-model";
import type { ViewProps } from "./types";

/** Next fires move on by themselves; a quarter-minute keeps "in 40 s" honest without much traffic. */
const SCHEDULES_REFRESH_MS = 15_000;
const PAGE_SIZE = 50;

/** Errors about the template as a whole that the API answers with codes of their own. */
const TEMPLATE_CODES = new Set(["unknown_type", "unsatisfiable_resources", "payload_too_large", "forbidden"]);

/**
 * Recurring schedules: the list with next and last fires, enable/disable, trigger now, delete (with a
 * confirm), and a create form whose problems (the API's own, per field) show beside each control.
 */
export function SchedulesView(props: ViewProps) {
  const { client } = props;
  const [pages, setPages] = useState(1);
  const list = useLoad(
    async (): Promise<Page<Schedule>> => {
      // Re-read as many pages as are shown, so a refresh keeps "Load more"'s rows.
      const items: Schedule[] = [];
      let cursor: string | undefined;
      for (let i = 0; i < pages; i += 1) {
        const page = await client.listSchedules({ limit: PAGE_SIZE, cursor });
        items.push(...page.items);
        cursor = page.nextCursor ?? undefined;
        if (cursor === undefined) break;
      }
      return { items, nextCursor: cursor ?? null };
    },
    [client, pages],
    SCHEDULES_REFRESH_MS,
  );
  const [outcome, setOutcome] = useState<Outcome | undefined>();
  const [creating, setCreating] = useState(false);
  const newButton = useRef<HTMLButtonElement>(null);

  /** Runs an action and says how it went; an action may answer its own success text. */
  const act = async (text: string, failure: string, action: () => Promise<unknown>) => {
    try {
      const said = await action();
      setOutcome({ text: typeof said === "string" ? said : text });
      await list.reload();
    } catch (error) {
      setOutcome({ text: failure, error });
      // The controls show what the server holds, not what a refused click left them showing.
      await list.reload();
    }
  };

  return (
    <ViewFrame
      id="schedules"
      title="Schedules"
      tools={
        <>
          <RefreshTools loaded={list} />
          <button
            type="button"
            class="button button-primary"
            ref={newButton}
            aria-expanded={creating}
            aria-controls="schedule-create"
            onClick={() => setCreating(!creating)}
          >
            {creating ? "Close form" : "New schedule"}
          </button>
        </>
      }
    >
      <OutcomeNotice outcome={outcome} />
      {creating ? (
        <CreateSchedule
          {...props}
          onCreated={async (schedule) => {
            setCreating(false);
            setOutcome({
              text: `Schedule ${schedule.name} created; next fire ${formatTime(schedule.nextRunAt)}.`,
            });
            newButton.current?.focus();
            await list.reload();
          }}
          onCancel={() => {
            setCreating(false);
            newButton.current?.focus();
          }}
        />
      ) : null}
      <ErrorNotice error={list.error} title="Could not read the schedules" />
      {list.data === undefined ? (
        list.loading ? (
          <Loading what="schedules" />
        ) : null
      ) : (
        <div class="card">
          <div class="av-table-wrap">
            <table class="av-table av-stack">
              <caption>
                {list.data.items.length === 0
                  ? "No schedules yet."
                  : `${list.data.items.length} schedule${list.data.items.length === 1 ? "" : "s"}`}
              </caption>
              {list.data.items.length === 0 ? null : (
                <>
                  <TableHead
                    columns={[
                      "Name",
                      "Cron",
                      "Enabled",
                      "Overlap",
                      "Next fires (your time)",
                      "Last fire (your time)",
                      "Actions",
                    ]}
                  />
                  <tbody>
                    {list.data.items.map((s) => (
                      <ScheduleRow key={s.id} schedule={s} act={act} client={client} />
                    ))}
                  </tbody>
                </>
              )}
            </table>
          </div>
          {list.data.nextCursor === null ? null : (
            <button type="button" class="button" onClick={() => setPages(pages + 1)}>
              Load more schedules
            </button>
          )}
        </div>
      )}
    </ViewFrame>
  );
}

function ScheduleRow(props: {
  readonly schedule: Schedule;
  readonly client: ViewProps["client"];
  readonly act: (text: string, failure: string, action: () => Promise<unknown>) => Promise<void>;
}) {
  const { schedule: s, client, act } = props;
  const now = new Date();
  const last = s.lastFires[0];
  return (
    <tr>
      <th scope="row" data-label="Name">
        <span>{s.name}</span>
        <br />
        <span class="muted av-mono">{s.id}</span>
        <br />
        <span class="muted">owner {s.owner}</span>
      </th>
      <td data-label="Cron">
        <code class="av-code">{s.cron}</code>
        <br />
        <span class="muted">{s.timezone}</span>
        {s.jitterSeconds > 0 ? <span class="muted"> · jitter {s.jitterSeconds} s</span> : null}
      </td>
      <td data-label="Enabled">
        <label class="av-checkbox">
          <input
            type="checkbox"
            checked={s.enabled}
            onChange={(e) => {
              const enabled = e.currentTarget.checked;
              void act(
                `Schedule ${s.name} ${enabled ? "enabled" : "disabled"}.`,
                `Could not ${enabled ? "enable" : "disable"} ${s.name}.`,
                () => client.updateSchedule(s.id, { enabled }),
              );
            }}
          />
          <span class="visually-hidden">Enabled: {s.name}</span>
          <span aria-hidden="true" class={`badge badge-${s.enabled ? "on" : "off"}`}>
            {s.enabled ? "on" : "off"}
          </span>
        </label>
      </td>
      <td data-label="Overlap">{s.overlap === "skip" ? "skip while running" : "allow"}</td>
      <td data-label="Next fires">
        {s.nextRunAt === null ? (
          <span class="muted">— (disabled)</span>
        ) : (
          <>
            <time dateTime={s.nextRunAt} title={s.nextRunAt}>
              {formatTime(s.nextRunAt)}
            </time>{" "}
            <span class="muted">({relativeTime(s.nextRunAt, now)})</span>
            {s.nextRuns.length > 1 ? (
              <FireList summary={`next ${s.nextRuns.length}`}>
                {s.nextRuns.map((at) => (
                  <li key={at}>
                    <time dateTime={at}>{formatTime(at)}</time>
                  </li>
                ))}
              </FireList>
            ) : null}
          </>
        )}
      </td>
      <td data-label="Last fire">
        {last === undefined ? (
          <span class="muted">never</span>
        ) : (
          <>
            <time dateTime={last.at} title={last.at}>
              {formatTime(last.at)}
            </time>
            <br />
            <span class={"skipped" in last ? "av-skip" : "muted"}>{describeFire(last)}</span>
            {s.lastFires.length > 1 ? (
              <FireList summary={`last ${s.lastFires.length}`}>
                {s.lastFires.map((f) => (
                  <li key={`${f.at}-${"jobId" in f ? f.jobId : f.skipped}`}>
                    <time dateTime={f.at}>{formatTime(f.at)}</time>: {describeFire(f)}
                  </li>
                ))}
              </FireList>
            ) : null}
          </>
        )}
      </td>
      <td data-label="Actions">
        <span class="av-actions">
          <button
            type="button"
            class="button"
            aria-label={`Trigger ${s.name} now`}
            onClick={() =>
              void act(`Triggered ${s.name}.`, `Could not trigger ${s.name}.`, async () => {
                const outcome = await client.triggerSchedule(s.id);
                // A skipped trigger (overlap: skip) is no error, but no job either: say so.
                return outcome.outcome === "skipped"
                  ? `${s.name} did not fire: ${describeFire(outcome.fire)}`
                  : `Triggered ${s.name}: job ${outcome.job.id}.`;
              })
            }
          >
            Trigger now
          </button>
          <ConfirmAction
            label="Delete"
            ariaLabel={`Delete ${s.name}`}
            question={`Delete ${s.name}? Jobs it fired stay.`}
            confirmLabel="Delete schedule"
            onConfirm={() =>
              act(`Schedule ${s.name} deleted.`, `Could not delete ${s.name}.`, () =>
                client.deleteSchedule(s.id),
              )
            }
          />
        </span>
      </td>
    </tr>
  );
}

/** A schedule's fires, folded away under their count. */
function FireList(props: { readonly summary: string; readonly children: ComponentChildren }) {
  return (
    <details>
      <summary>{props.summary}</summary>
      <ol class="av-fires">{props.children}</ol>
    </details>
  );
}

const FIELDS = ["name", "cron", "timezone", "overlap", "enabled", "job"] as const;

function zones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (key: string) => string[] };
  try {
    return intl.supportedValuesOf?.("timeZone") ?? ["UTC"];
  } catch {
    return ["UTC"];
  }
}

function CreateSchedule(
  props: ViewProps & { readonly onCreated: (s: Schedule) => Promise<void>; readonly onCancel: () => void },
) {
  const [form, setForm] = useState<ScheduleForm>(EMPTY_SCHEDULE_FORM);
  const submission = useSubmission();
  const { problems, error, busy } = submission;
  const set = <K extends keyof ScheduleForm>(key: K, value: ScheduleForm[K]) =>
    setForm({ ...form, [key]: value });

  const submit = async (e: Event) => {
    e.preventDefault();
    const built = scheduleRequest(form);
    if (!built.ok) {
      submission.refuse(built.problems);
      return;
    }
    const created = await submission.send(
      () => props.client.createSchedule(built.request),
      (caught) => {
        const shown = describeError(caught);
        // A template refused as a submission would be (unknown type, no pool fits) belongs to the job field.
        if (shown.problems.length > 0) return shown.problems;
        return TEMPLATE_CODES.has(shown.code)
          ? [{ path: "job", message: `${shown.code}: ${shown.message}` }]
          : [];
      },
    );
    if (created !== undefined) await props.onCreated(created);
  };

  const fieldError = (field: string) => {
    const mine = problemsAt(problems, field);
    if (mine.length === 0) return null;
    return (
      <p class="av-field-error" id={`sched-${field}-error`}>
        {mine.map((p) => (
          <span key={p.path + p.message}>
            {p.path === field ? "" : `${p.path}: `}
            {p.message}
            <br />
          </span>
        ))}
      </p>
    );
  };
  const invalid = (field: string) => problemsAt(problems, field).length > 0;
  const describedBy = (field: string, hint?: string) =>
    [invalid(field) ? `sched-${field}-error` : undefined, hint].filter(Boolean).join(" ") || undefined;
  const rest = unclaimedProblems(problems, FIELDS);

  return (
    <form
      id="schedule-create"
      class="card"
      aria-labelledby="schedule-create-title"
      onSubmit={submit}
      noValidate
    >
      <h2 id="schedule-create-title">New schedule</h2>
      {error === undefined ? null : (
        <ErrorNotice error={error} title="The schedule was not created" hideProblems />
      )}
      {rest.length === 0 ? null : (
        <div class="notice notice-error" role="alert">
          {rest.map((p) => (
            <p key={p.path + p.message}>
              {p.path}: {p.message}
            </p>
          ))}
        </div>
      )}
      <div class="av-form">
        <div class="av-field">
          <label for="sched-name">Name</label>
          <input
            id="sched-name"
            class="av-input"
            value={form.name}
            required
            aria-invalid={invalid("name")}
            aria-describedby={describedBy("name")}
            onInput={(e) => set("name", e.currentTarget.value)}
          />
          {fieldError("name")}
        </div>
        <div class="av-field">
          <label for="sched-cron">Cron</label>
          <input
            id="sched-cron"
            class="av-input av-mono"
            value={form.cron}
            required
            aria-invalid={invalid("cron")}
            aria-describedby={describedBy("cron", "sched-cron-hint")}
            onInput={(e) => set("cron", e.currentTarget.value)}
          />
          <span class="av-hint" id="sched-cron-hint">
            minute hour day month weekday, or @hourly, @daily …
          </span>
          {fieldError("cron")}
        </div>
        <div class="av-field">
          <label for="sched-timezone">Timezone</label>
          <input
            id="sched-timezone"
            class="av-input"
            list="sched-timezones"
            value={form.timezone}
            aria-invalid={invalid("timezone")}
            aria-describedby={describedBy("timezone", "sched-timezone-hint")}
            onInput={(e) => set("timezone", e.currentTarget.value)}
          />
          <datalist id="sched-timezones">
            {zones().map((z) => (
              <option key={z} value={z} />
            ))}
          </datalist>
          <span class="av-hint" id="sched-timezone-hint">
            IANA name, e.g. Europe/Berlin
          </span>
          {fieldError("timezone")}
        </div>
        <div class="av-field">
          <label for="sched-overlap">Overlap</label>
          <select
            id="sched-overlap"
            class="av-select"
            value={form.overlap}
            aria-invalid={invalid("overlap")}
            aria-describedby={describedBy("overlap")}
            onChange={(e) => set("overlap", e.currentTarget.value === "skip" ? "skip" : "allow")}
          >
            <option value="allow">allow: fire every time</option>
            <option value="skip">skip: not while the last job runs</option>
          </select>
          {fieldError("overlap")}
        </div>
        <div class="av-field">
          <span class="av-label" aria-hidden="true">
            State
          </span>
          <label class="av-checkbox">
            <input
              type="checkbox"
              checked={form.enabled}
              onChange={(e) => set("enabled", e.currentTarget.checked)}
            />
            Enabled
          </label>
          {fieldError("enabled")}
        </div>
        <div class="av-field av-wide">
          <label for="sched-job">Job template (JSON, as the body of POST /jobs)</label>
          <textarea
            id="sched-job"
            class="av-textarea"
            rows={8}
            spellcheck={false}
            value={form.job}
            aria-invalid={invalid("job")}
            aria-describedby={describedBy("job", "sched-job-hint")}
            onInput={(e) => set("job", e.currentTarget.value)}
          />
          <span class="av-hint" id="sched-job-hint">
            dependsOn, runAt and deadline are not allowed in a template.
          </span>
          {fieldError("job")}
        </div>
      </div>
      <div class="av-actions" style={{ marginTop: "12px" }}>
        <button type="submit" class="button button-primary" disabled={busy}>
          {busy ? "Creating…" : "Create schedule"}
        </button>
        <button type="button" class="button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
