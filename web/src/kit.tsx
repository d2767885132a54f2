import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { describeError, type FieldProblem } from "./errors";
import "./views/views.css";

/**
 * Small parts every view shares: loading a resource (once or by polling), showing an API error
 * with its code, the page frame, a two-step confirm for destructive actions.
 */

export interface Loaded<T> {
  readonly data: T | undefined;
  readonly error: unknown;
  readonly loading: boolean;
  /** When the data was last read (for "updated 3 s ago"). */
  readonly loadedAt: Date | undefined;
  readonly reload: () => Promise<void>;
}

/**
 * Reads `load` now, whenever the deps change, on reload(), and with `intervalMs` again every
 * interval. Keeps showing the last answer while a new one is read (live refreshes must not
 * flash) and beside an error (a blip does not blank the page). A poll never overlaps the read
 * before it (a slow API is not piled on); reload() always reads anew, since it follows a change
 * the reader just made, and any answer overtaken by a newer read is dropped.
 */
export function useLoad<T>(load: () => Promise<T>, deps: readonly unknown[], intervalMs?: number): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [loading, setLoading] = useState(true);
  const [loadedAt, setLoadedAt] = useState<Date | undefined>(undefined);
  // Each read takes the next generation; only the newest read's answer is shown.
  const generation = useRef(0);
  const inFlight = useRef<number | null>(null);
  // The caller's deps say when `load` changes (a new closure every render is not a change).
  const latest = useRef(load);
  latest.current = load;
  const read = useCallback(async (poll: boolean) => {
    if (poll && inFlight.current !== null) return;
    generation.current += 1;
    const mine = generation.current;
    inFlight.current = mine;
    try {
      const value = await latest.current();
      if (mine !== generation.current) return;
      setData(value);
      setError(undefined);
      setLoadedAt(new Date());
    } catch (e) {
      if (mine === generation.current) setError(e);
    } finally {
      if (inFlight.current === mine) inFlight.current = null;
      if (mine === generation.current) setLoading(false);
    }
  }, []);
  const reload = useCallback(() => read(false), [read]);
  useEffect(() => {
    setLoading(true);
    void read(false);
    if (intervalMs === undefined) return undefined;
    const timer = setInterval(() => void read(true), intervalMs);
    return () => clearInterval(timer);
  }, [...deps, intervalMs]);
  return { data, error, loading, loadedAt, reload };
}

/** A form's send: busy while it runs, then the problems to put beside each field and the error. */
export interface Submission {
  readonly problems: readonly FieldProblem[];
  readonly error: unknown;
  readonly busy: boolean;
  /** The form's own check refused it before anything was sent. */
  readonly refuse: (problems: readonly FieldProblem[]) => void;
  /** Forgets the problems and the error (the edit was discarded). */
  readonly clear: () => void;
  /** Sends; resolves the answer, or undefined after a failure (then kept in problems and error). */
  readonly send: <T>(
    call: () => Promise<T>,
    problemsOf?: (error: unknown) => readonly FieldProblem[],
  ) => Promise<T | undefined>;
}

export function useSubmission(): Submission {
  const [problems, setProblems] = useState<readonly FieldProblem[]>([]);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const refuse = (found: readonly FieldProblem[]) => {
    setProblems(found);
    setError(undefined);
  };
  const clear = () => refuse([]);
  const send = async <T,>(
    call: () => Promise<T>,
    problemsOf: (error: unknown) => readonly FieldProblem[] = (e) => describeError(e).problems,
  ): Promise<T | undefined> => {
    setBusy(true);
    try {
      const answer = await call();
      clear();
      return answer;
    } catch (caught) {
      setProblems(problemsOf(caught));
      setError(caught);
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { problems, error, busy, refuse, clear, send };
}

/** An API error as the contract gives it: its code, HTTP status, message, and each field problem. */
export function ErrorNotice(props: {
  readonly error: unknown;
  readonly title?: string;
  /** Offers "Try again", for an error that ends what the view can show. */
  readonly retry?: () => void;
  /** The form shows the field problems beside its controls: list none here. */
  readonly hideProblems?: boolean;
}) {
  if (props.error === undefined || props.error === null) return null;
  const shown = describeError(props.error);
  return (
    <div class="notice notice-error" role="alert">
      <p>
        <strong>{props.title ?? "Request failed"}</strong> <code class="av-code">{shown.code}</code>
        {shown.status === undefined ? null : <span class="muted"> (HTTP {shown.status})</span>}
      </p>
      <p>{shown.message}</p>
      {shown.problems.length > 1 && props.hideProblems !== true ? (
        <ul class="notice-list">
          {shown.problems.map((p) => (
            <li key={`${p.path}:${p.message}`}>
              {p.path === "" ? "" : <code>{p.path}</code>} {p.message}
            </li>
          ))}
        </ul>
      ) : null}
      {props.retry && (
        <button type="button" class="button" onClick={props.retry}>
          Try again
        </button>
      )}
    </div>
  );
}

/** What an action the reader took came to: a success line, or the error it met. */
export interface Outcome {
  readonly text: string;
  readonly error?: unknown;
}

/** The last action's outcome, announced politely (the region stays, so readers hear each new one). */
export function OutcomeNotice(props: { readonly outcome: Outcome | undefined }) {
  const { outcome } = props;
  return (
    <div aria-live="polite">
      {outcome === undefined ? null : outcome.error === undefined ? (
        <p class="av-ok">{outcome.text}</p>
      ) : (
        <ErrorNotice error={outcome.error} title={outcome.text} />
      )}
    </div>
  );
}

/** A polled view's toolbar start: how fresh the page is, and a button to read it now. */
export function RefreshTools(props: {
  readonly loaded: Pick<Loaded<unknown>, "loadedAt" | "reload">;
  readonly everyMs?: number;
}) {
  return (
    <>
      <Freshness loadedAt={props.loaded.loadedAt} everyMs={props.everyMs} />
      <button type="button" class="button" onClick={() => void props.loaded.reload()}>
        Refresh
      </button>
    </>
  );
}

/** A table's column headings, in order. */
export function TableHead(props: { readonly columns: readonly string[] }) {
  return (
    <thead>
      <tr>
        {props.columns.map((column) => (
          <th key={column} scope="col">
            {column}
          </th>
        ))}
      </tr>
    </thead>
  );
}

export function Loading(props: { readonly what: string }) {
  return (
    <p class="muted" role="status">
      Loading {props.what}…
    </p>
  );
}

/** The frame of each view: a heading, an optional toolbar beside it, the body. */
export function ViewFrame(props: {
  readonly title: string;
  readonly id: string;
  readonly tools?: ComponentChildren;
  readonly children: ComponentChildren;
}) {
  return (
    <section class="view" aria-labelledby={`${props.id}-title`}>
      <header class="view-header">
        <h1 id={`${props.id}-title`}>{props.title}</h1>
        {props.tools === undefined ? null : <div class="view-tools">{props.tools}</div>}
      </header>
      {props.children}
    </section>
  );
}

/**
 * A destructive action in two steps: the first press asks, in place, and moves focus to the
 * question's Confirm; Escape or Cancel backs out. No window.confirm: it blocks polling and
 * cannot be styled or labelled.
 */
export function ConfirmAction(props: {
  readonly label: string;
  /** The accessible name of the first button, where `label` alone is ambiguous ("Drain node cpu-1"). */
  readonly ariaLabel?: string;
  readonly question: string;
  readonly confirmLabel: string;
  readonly onConfirm: () => Promise<void> | void;
  readonly disabled?: boolean;
}) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const confirmRef = useRef<HTMLButtonElement>(null);
  const openRef = useRef<HTMLButtonElement>(null);
  // A layout effect, not an effect: focus reaches Confirm in the same task that shows it, so an
  // Escape pressed as soon as the question is visible lands inside it instead of on <body>.
  useLayoutEffect(() => {
    if (asking) confirmRef.current?.focus();
  }, [asking]);
  if (!asking) {
    return (
      <button
        type="button"
        class="button button-danger"
        ref={openRef}
        disabled={props.disabled}
        aria-label={props.ariaLabel}
        onClick={() => setAsking(true)}
      >
        {props.label}
      </button>
    );
  }
  const close = () => {
    setAsking(false);
    // Focus back where the reader was, not lost to <body>.
    setTimeout(() => openRef.current?.focus(), 0);
  };
  return (
    <fieldset
      class="av-confirm"
      aria-label={props.question}
      onKeyDown={(e) => {
        if (e.key === "Escape") close();
      }}
    >
      <span>{props.question}</span>
      <button
        type="button"
        class="button button-danger-solid"
        ref={confirmRef}
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          try {
            await props.onConfirm();
          } finally {
            setBusy(false);
            setAsking(false);
          }
        }}
      >
        {props.confirmLabel}
      </button>
      <button type="button" class="button" onClick={close}>
        Cancel
      </button>
    </fieldset>
  );
}

/** A horizontal bar for a 0..1 share; decorative: the text beside it says the same for screen readers. */
export function ShareBar(props: { readonly share: number | null; readonly level: string }) {
  const width = props.share === null ? 0 : Math.round(Math.min(1, props.share) * 100);
  return (
    <span class={`av-bar av-bar-${props.level}`} aria-hidden="true">
      <span class="av-bar-fill" style={{ width: `${width}%` }} />
    </span>
  );
}

/** "updated 4 s ago" under a polled view, so a stale page is visible as stale. */
export function Freshness(props: { readonly loadedAt: Date | undefined; readonly everyMs?: number }) {
  const [, tick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(timer);
  }, []);
  if (props.loadedAt === undefined) return null;
  const s = Math.max(0, Math.round((Date.now() - props.loadedAt.getTime()) / 1000));
  return (
    <span class="muted">
      Updated {s} s ago{props.everyMs === undefined ? "" : ` · refreshes every ${props.everyMs / 1000} s`}
    </span>
  );
}

/**
 * Back and forth through a cursor-paged list (the API's `nextCursor`): `cursors` is the path of
 * cursors that led to the page shown, so "back" needs no cursor of its own.
 */
export function Pager(props: {
  readonly label: string;
  /** The first page's cursor is `undefined`. */
  readonly cursors: readonly (string | undefined)[];
  readonly onCursors: (cursors: (string | undefined)[]) => void;
  readonly nextCursor: string | null | undefined;
  readonly previousText: string;
  readonly nextText: string;
}) {
  const { cursors, onCursors, nextCursor } = props;
  return (
    <nav class="pager" aria-label={props.label}>
      <button
        type="button"
        class="button"
        disabled={cursors.length <= 1}
        onClick={() => onCursors(cursors.slice(0, -1))}
      >
        ← {props.previousText}
      </button>
      <span class="muted">page {cursors.length}</span>
      <button
        type="button"
        class="button"
        disabled={!nextCursor}
        onClick={() => nextCursor && onCursors([...cursors, nextCursor])}
      >
        {props.nextText} →
      </button>
    </nav>
  );
}
