import { type ComponentChildren, createContext } from "preact";
import { useCallback, useContext, useRef, useState } from "preact/hooks";
import { JobqApiError, type JobqClient } from "../../client/index";
import { isTerminal, PRIORITY_NAMES, priorityBand, priorityLabel, shortId } from "./format";

/** The pieces the job views share: toasts, badges, job actions (loading and errors: kit.tsx). */

// ---- toasts: announced to screen readers through one aria-live region ----

interface Toast {
  readonly id: number;
  readonly text: string;
  readonly kind: "ok" | "error";
}

type Notify = (text: string, kind?: Toast["kind"]) => void;
const ToastContext = createContext<Notify>(() => undefined);

export function ToastProvider(props: { readonly children: ComponentChildren }) {
  const [toasts, setToasts] = useState<Toast[]>([]);
  const next = useRef(1);
  const notify = useCallback<Notify>((text, kind = "ok") => {
    const id = next.current++;
    setToasts((all) => [...all.slice(-3), { id, text, kind }]);
    setTimeout(() => setToasts((all) => all.filter((t) => t.id !== id)), kind === "error" ? 8000 : 4000);
  }, []);
  return (
    <ToastContext.Provider value={notify}>
      {props.children}
      <div class="toasts" role="status" aria-live="polite" aria-label="Notifications">
        {toasts.map((toast) => (
          <div key={toast.id} class={`toast toast-${toast.kind}`}>
            {toast.text}
          </div>
        ))}
      </div>
    </ToastContext.Provider>
  );
}

export function useNotify(): Notify {
  return useContext(ToastContext);
}

/** The message a person should read for a failed call. */
export function errorText(error: unknown): string {
  if (error instanceof JobqApiError) return `${error.message} (${error.code})`;
  return error instanceof Error ? error.message : String(error);
}

/** Runs an action, says how it went in a toast, and resolves whether it succeeded. */
export function useAction(): (label: string, act: () => Promise<unknown>) => Promise<boolean> {
  const notify = useNotify();
  return useCallback(
    async (label, act) => {
      try {
        await act();
        notify(`${label}: done`);
        return true;
      } catch (error) {
        notify(`${label} failed: ${errorText(error)}`, "error");
        return false;
      }
    },
    [notify],
  );
}

// ---- badges ----

export function StatusBadge(props: { readonly status: string }) {
  return <span class={`status status-${props.status}`}>{props.status}</span>;
}

export function PriorityChip(props: { readonly priority: number }) {
  return (
    <span class={`priority priority-${priorityBand(props.priority)}`} title={`priority ${props.priority}`}>
      {priorityLabel(props.priority)}
    </span>
  );
}

// ---- job actions ----

const PAUSABLE = new Set(["scheduled", "blocked", "queued", "retrying", "dispatched", "running"]);
const RETRYABLE = new Set(["failed", "cancelled", "escalated"]);

/** The actions a job's status allows; each calls the API and then onDone (to re-read). */
export function JobActions(props: {
  readonly client: JobqClient;
  readonly job: { readonly id: string; readonly status: string; readonly priority: number };
  readonly onDone?: () => void;
  /** Show the priority selector. @default true */
  readonly withPriority?: boolean;
}) {
  const { client, job, onDone } = props;
  const act = useAction();
  const run = (label: string, call: () => Promise<unknown>) => () => {
    void act(`${label} ${shortId(job.id)}`, call).then(() => onDone?.());
  };
  const terminal = isTerminal(job.status);
  return (
    <div class="actions">
      {PAUSABLE.has(job.status) && (
        <button type="button" class="button" onClick={run("Pause", () => client.pause(job.id))}>
          Pause
        </button>
      )}
      {job.status === "paused" && (
        <button type="button" class="button" onClick={run("Resume", () => client.resume(job.id))}>
          Resume
        </button>
      )}
      {RETRYABLE.has(job.status) && (
        <button type="button" class="button" onClick={run("Retry", () => client.retry(job.id))}>
          Retry
        </button>
      )}
      {!terminal && (
        <button
          type="button"
          class="button button-danger"
          onClick={run("Cancel", () => client.cancel(job.id))}
          aria-label={`Cancel ${job.id}`}
        >
          Cancel
        </button>
      )}
      {!terminal && props.withPriority !== false && (
        <label class="inline-field">
          <span class="visually-hidden">Priority of {job.id}</span>
          <select
            value={String(job.priority)}
            onChange={(event) => {
              const priority = Number((event.currentTarget as HTMLSelectElement).value);
              run("Set priority of", () => client.updateJob(job.id, { priority }))();
            }}
          >
            {priorityOptions(job.priority).map((p) => (
              <option key={p} value={String(p)}>
                {priorityLabel(p)}
              </option>
            ))}
          </select>
        </label>
      )}
    </div>
  );
}

function priorityOptions(current: number): number[] {
  const values = new Set(PRIORITY_NAMES.map((p) => p.value));
  values.add(current);
  return [...values].sort((a, b) => b - a);
}
