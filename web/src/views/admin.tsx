import { useState } from "preact/hooks";
import type { Circuit, PolicyInput, PolicyView, QuotaView } from "../../../client/index";
import { problemsAt, unclaimedProblems } from "../errors";
import {
  ConfirmAction,
  ErrorNotice,
  Loading,
  type Outcome,
  OutcomeNotice,
  RefreshTools,
  ShareBar,
  TableHead,
  useLoad,
  useSubmission,
  ViewFrame,
} from "../kit";
import { jobHref } from "../router";
import {
  formatQuotaAmount,
  parsePolicy,
  policyText,
  QUOTA_WARNING_SHARE,
  type QuotaForm,
  quotaForm,
  quotaLimits,
  quotaRows,
} from "./admin-model";
import { formatTime } from "./schedules-model";
import type { ViewProps } from "./types";

/**
 * Administration: the scheduling policy as JSON (GET/PUT /admin/policy) and principals' quotas
 * (GET/PUT /quotas/{principal}) with usage against each limit and the 80 % warning. Admins only:
 * the API refuses others anyway, so they get a plain sentence instead of a page of 403s.
 */
export function AdminView(props: ViewProps) {
  if (!props.admin) {
    return (
      <ViewFrame id="admin" title="Admin">
        <div class="notice notice-warn" role="status">
          <p>
            <strong>Admins only.</strong> The policy and quota settings can be seen and changed only with an
            admin token. Ask an administrator if a limit or the policy needs to change.
          </p>
        </div>
      </ViewFrame>
    );
  }
  return (
    <ViewFrame id="admin" title="Admin">
      <PolicyEditor {...props} />
      <Circuits {...props} />
      <Quotas {...props} />
    </ViewFrame>
  );
}

function PolicyEditor(props: ViewProps) {
  const { client } = props;
  const [text, setText] = useState<string | undefined>(undefined);
  const [saved, setSaved] = useState<PolicyView | undefined>(undefined);
  const submission = useSubmission();
  const { problems, error, busy } = submission;
  const [result, setResult] = useState("");
  const policy = useLoad(async () => {
    const view = await client.getPolicy();
    setSaved(view);
    setText(policyText(view));
    return view;
  }, [client]);

  const current = saved ?? policy.data;
  const dirty = current !== undefined && text !== undefined && text !== policyText(current);

  const save = async (e: Event) => {
    e.preventDefault();
    if (text === undefined) return;
    setResult("");
    const parsed = parsePolicy(text);
    if (!parsed.ok) {
      submission.refuse(parsed.problems);
      return;
    }
    // Sent as typed: the server's schema is the one judge of a policy, and its messages are shown.
    const view = await submission.send(() => client.putPolicy(parsed.policy as PolicyInput));
    if (view === undefined) return;
    setSaved(view);
    setText(policyText(view));
    setResult(`Policy saved at ${formatTime(view.updatedAt)}. It takes effect at the next scheduling pass.`);
  };

  return (
    <form class="card" aria-labelledby="policy-title" onSubmit={save} noValidate>
      <div class="card-head">
        <h2 id="policy-title">Scheduling policy</h2>
        {current === undefined ? null : (
          <span class="muted">
            {current.updatedAt === null
              ? "Defaults: never changed"
              : `Last changed ${formatTime(current.updatedAt)}${current.updatedBy === null ? "" : ` by ${current.updatedBy}`}`}
          </span>
        )}
      </div>
      <ErrorNotice error={policy.error} title="Could not read the policy" />
      {text === undefined ? (
        policy.loading ? (
          <Loading what="the policy" />
        ) : null
      ) : (
        <>
          <div class="av-field">
            <label for="policy-json">
              Policy (JSON). Saving replaces it whole; fields left out take their defaults.
            </label>
            <textarea
              id="policy-json"
              class="av-textarea"
              rows={16}
              spellcheck={false}
              value={text}
              aria-invalid={problems.length > 0}
              aria-describedby={problems.length > 0 ? "policy-problems" : undefined}
              onInput={(e) => setText(e.currentTarget.value)}
            />
          </div>
          {problems.length === 0 ? null : (
            <ul class="av-field-error" id="policy-problems">
              {problems.map((p) => (
                <li key={p.path + p.message}>
                  {p.path === "" ? "" : <code class="av-code">{p.path}</code>} {p.message}
                </li>
              ))}
            </ul>
          )}
          {error === undefined ? null : (
            <ErrorNotice error={error} title="The policy was not saved" hideProblems />
          )}
          <div class="av-actions" style={{ marginTop: "12px" }}>
            <button type="submit" class="button button-primary" disabled={busy}>
              {busy ? "Saving…" : "Save policy"}
            </button>
            <button
              type="button"
              class="button"
              disabled={!dirty || busy}
              onClick={() => {
                if (current !== undefined) setText(policyText(current));
                submission.clear();
              }}
            >
              Discard changes
            </button>
            {dirty ? <span class="muted">Unsaved changes</span> : null}
          </div>
        </>
      )}
      <p class="av-ok" aria-live="polite" role="status">
        {result}
      </p>
    </form>
  );
}

const LIMIT_FIELDS: readonly {
  readonly key: keyof QuotaForm;
  readonly label: string;
  readonly hint: string;
}[] = [
  { key: "dailyGpuSeconds", label: "GPU-seconds per day", hint: "resets 00:00 UTC" },
  { key: "weeklyGpuSeconds", label: "GPU-seconds per week", hint: "resets Monday 00:00 UTC" },
  { key: "maxQueuedJobs", label: "Jobs not yet started", hint: "more is refused with 429" },
  { key: "maxPriority", label: "Highest priority", hint: "−10..10 or a name (high)" },
];

function Quotas(props: ViewProps) {
  const { client } = props;
  const [principal, setPrincipal] = useState("");
  const [view, setView] = useState<QuotaView | undefined>(undefined);
  const [lookupError, setLookupError] = useState<unknown>(undefined);
  const [looking, setLooking] = useState(false);

  const lookUp = async (e: Event) => {
    e.preventDefault();
    const name = principal.trim();
    if (name === "") {
      setLookupError(new Error("Enter a principal (a user id, or project:<name>)."));
      return;
    }
    setLooking(true);
    try {
      setView(await client.getQuota(name));
      setLookupError(undefined);
    } catch (caught) {
      setView(undefined);
      setLookupError(caught);
    } finally {
      setLooking(false);
    }
  };

  return (
    <section class="card" aria-labelledby="quotas-title">
      <h2 id="quotas-title">Quotas</h2>
      <form class="av-actions" onSubmit={lookUp} aria-label="Look up a principal's quota">
        <label for="quota-principal" class="av-field" style={{ flex: "1 1 220px" }}>
          <span class="av-label">Principal</span>
          <input
            id="quota-principal"
            class="av-input"
            value={principal}
            placeholder="alice or project:vision"
            autoComplete="off"
            aria-describedby={lookupError === undefined ? undefined : "quota-lookup-error"}
            onInput={(e) => setPrincipal(e.currentTarget.value)}
          />
        </label>
        <button
          type="submit"
          class="button button-primary"
          disabled={looking}
          style={{ alignSelf: "flex-end" }}
        >
          {looking ? "Looking up…" : "Look up"}
        </button>
      </form>
      <div id="quota-lookup-error">
        <ErrorNotice error={lookupError} title="Could not read the quota" />
      </div>
      {view === undefined ? null : (
        <QuotaDetail key={view.principal} view={view} client={client} onSaved={setView} />
      )}
    </section>
  );
}

function QuotaDetail(props: {
  readonly view: QuotaView;
  readonly client: ViewProps["client"];
  readonly onSaved: (view: QuotaView) => void;
}) {
  const { view } = props;
  const rows = quotaRows(view);
  const warned = rows.filter((r) => r.warning);
  const [form, setForm] = useState<QuotaForm>(quotaForm(view));
  const submission = useSubmission();
  const { problems, error, busy } = submission;
  const [result, setResult] = useState("");

  const unclaimed = unclaimedProblems(
    problems,
    LIMIT_FIELDS.map((f) => f.key),
  );

  const save = async (e: Event) => {
    e.preventDefault();
    setResult("");
    const built = quotaLimits(form);
    if (!built.ok) {
      submission.refuse(built.problems);
      return;
    }
    const saved = await submission.send(() => props.client.putQuota(view.principal, built.limits));
    if (saved === undefined) return;
    setForm(quotaForm(saved));
    props.onSaved(saved);
    setResult(`Limits of ${saved.principal} saved.`);
  };

  return (
    <div style={{ marginTop: "16px" }}>
      {warned.length > 0 || view.warning ? (
        <div class="notice notice-warn" role="status">
          <strong>Warning:</strong> {view.principal} has used {Math.round(QUOTA_WARNING_SHARE * 100)} % or
          more of {warned.length > 0 ? warned.map((r) => r.label).join("; ") : "a limit"}.
          {warned.some((r) => r.exceeded)
            ? " A limit is reached: GPU jobs wait, or submissions are refused."
            : ""}
        </div>
      ) : null}
      <div class="av-table-wrap">
        <table class="av-table av-stack">
          <caption>
            Usage of <span class="av-mono">{view.principal}</span> against its limits
          </caption>
          <TableHead columns={["Measure", "Used", "Remaining", "State"]} />
          <tbody>
            {rows.map((r) => {
              const remaining = view.remaining[r.key];
              const state =
                r.limit === null
                  ? "no limit"
                  : r.exceeded
                    ? "limit reached"
                    : r.warning
                      ? "≥\u00a080\u00a0%"
                      : "ok";
              return (
                <tr key={r.key}>
                  <th scope="row" data-label="Measure">
                    {r.label}
                  </th>
                  <td data-label="Used">
                    <span class="av-usage">
                      <span>{formatQuotaAmount(r)}</span>
                      {r.share === null ? null : (
                        <ShareBar
                          share={Math.min(1, r.share)}
                          level={r.exceeded ? "full" : r.warning ? "high" : "low"}
                        />
                      )}
                    </span>
                  </td>
                  <td data-label="Remaining">
                    {remaining === null ? "—" : Math.round(remaining).toLocaleString("en-US")}
                  </td>
                  <td data-label="State">
                    <span
                      class={`badge ${r.exceeded ? "badge-lost" : r.warning ? "badge-late" : r.limit === null ? "badge-off" : "badge-up"}`}
                    >
                      {state}
                    </span>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <p class="muted">
        Highest priority allowed:{" "}
        {view.limits.maxPriority === null ? "no limit" : String(view.limits.maxPriority)}
      </p>

      <form onSubmit={save} noValidate aria-labelledby="quota-edit-title">
        <h3 id="quota-edit-title">Edit limits of {view.principal}</h3>
        <p class="av-hint">Leave a field empty for no limit. Saving replaces all four limits.</p>
        {error === undefined ? null : (
          <ErrorNotice error={error} title="The limits were not saved" hideProblems />
        )}
        <div class="av-form">
          {LIMIT_FIELDS.map((f) => {
            const mine = problemsAt(problems, f.key);
            return (
              <div class="av-field" key={f.key}>
                <label for={`quota-${f.key}`}>{f.label}</label>
                <input
                  id={`quota-${f.key}`}
                  class="av-input"
                  inputMode={f.key === "maxPriority" ? "text" : "numeric"}
                  value={form[f.key]}
                  aria-invalid={mine.length > 0}
                  aria-describedby={`quota-${f.key}-hint${mine.length > 0 ? ` quota-${f.key}-error` : ""}`}
                  onInput={(e) => setForm({ ...form, [f.key]: e.currentTarget.value })}
                />
                <span class="av-hint" id={`quota-${f.key}-hint`}>
                  {f.hint}
                </span>
                {mine.length === 0 ? null : (
                  <p class="av-field-error" id={`quota-${f.key}-error`}>
                    {mine.map((p) => p.message).join("; ")}
                  </p>
                )}
              </div>
            );
          })}
        </div>
        {unclaimed.length === 0 ? null : (
          <ul class="av-field-error">
            {unclaimed.map((p) => (
              <li key={p.path + p.message}>
                {p.path === "" ? "" : <code class="av-code">{p.path}</code>} {p.message}
              </li>
            ))}
          </ul>
        )}
        <div class="av-actions" style={{ marginTop: "12px" }}>
          <button type="submit" class="button button-primary" disabled={busy}>
            {busy ? "Saving…" : "Save limits"}
          </button>
        </div>
        <p class="av-ok" aria-live="polite" role="status">
          {result}
        </p>
      </form>
    </div>
  );
}

/** How often the circuits panel reads GET /admin/circuits again: one Query per read. */
const CIRCUITS_POLL_MS = 5000;

const CIRCUIT_BADGE: Readonly<Record<string, string>> = {
  closed: "badge-up",
  open: "badge-lost",
  half_open: "badge-late",
};

const CIRCUIT_LABEL: Readonly<Record<string, string>> = {
  closed: "closed",
  open: "open",
  half_open: "half-open",
};

/** The breaker's name as the admin reads it: its type, and its owner for scope type+owner. */
const circuitName = (c: Circuit): string => (c.owner === null ? c.type : `${c.type} (${c.owner})`);

/**
 * The circuit breakers per task type (GET /admin/circuits): each one's state, counted failures,
 * when an open one half-opens and its probe; a reset (POST /admin/circuits/{type}/reset) asks first,
 * since it lets every waiting job of the type start again.
 */
function Circuits(props: ViewProps) {
  const { client } = props;
  const circuits = useLoad(() => client.listCircuits(), [client], CIRCUITS_POLL_MS);
  const [outcome, setOutcome] = useState<Outcome | undefined>(undefined);
  const items = circuits.data?.items ?? [];
  const reset = async (c: Circuit) => {
    try {
      const closed = await client.resetCircuit(c.type, c.owner ?? undefined);
      setOutcome({
        text: `Circuit ${circuitName(closed)} reset: ${CIRCUIT_LABEL[closed.state] ?? closed.state}.`,
      });
    } catch (error) {
      setOutcome({ text: `Circuit ${circuitName(c)} was not reset`, error });
    }
    await circuits.reload();
  };
  return (
    <section class="card" aria-labelledby="circuits-title">
      <div class="card-head">
        <h2 id="circuits-title">Circuit breakers</h2>
        <span class="av-actions">
          <RefreshTools loaded={circuits} everyMs={CIRCUITS_POLL_MS} />
        </span>
      </div>
      <ErrorNotice error={circuits.error} title="Could not read the circuit breakers" />
      <OutcomeNotice outcome={outcome} />
      {circuits.data === undefined ? (
        circuits.loading ? (
          <Loading what="the circuit breakers" />
        ) : null
      ) : items.length === 0 ? (
        <p class="muted">
          No circuit breakers yet: one appears when a type with a breaker in the policy has its first failure.
        </p>
      ) : (
        <div class="av-table-wrap">
          <table class="av-table av-stack">
            <caption class="visually-hidden">Circuit breakers per task type</caption>
            <TableHead columns={["Type", "Owner", "State", "Failures", "Half-opens at", "Probe", "Action"]} />
            <tbody>
              {items.map((c) => (
                <tr key={`${c.type}#${c.owner ?? ""}`}>
                  <th scope="row" data-label="Type" class="av-mono">
                    {c.type}
                  </th>
                  <td data-label="Owner">{c.owner ?? "—"}</td>
                  <td data-label="State">
                    <span class={`badge ${CIRCUIT_BADGE[c.state] ?? "badge-off"}`}>
                      {CIRCUIT_LABEL[c.state] ?? c.state}
                    </span>
                    {c.configured ? null : <span class="muted small"> not in the policy</span>}
                  </td>
                  <td data-label="Failures">{c.failures}</td>
                  <td data-label="Half-opens at">{formatTime(c.halfOpensAt)}</td>
                  <td data-label="Probe">
                    {c.probeJobId === null ? "—" : <a href={jobHref(c.probeJobId)}>{c.probeJobId}</a>}
                  </td>
                  <td data-label="Action">
                    <ConfirmAction
                      label="Reset"
                      ariaLabel={`Reset circuit ${circuitName(c)}`}
                      question={`Close the breaker of ${circuitName(c)} and empty its failure window? Its waiting jobs start from the next pass.`}
                      confirmLabel="Reset breaker"
                      onConfirm={() => reset(c)}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
