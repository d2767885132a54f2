import { useEffect, useMemo, useState } from "preact/hooks";
import { JobqApiError, JobqClient } from "../../client/index";
import { type DashboardConfig, loadConfig } from "./config";
import { ErrorNotice } from "./kit";
import { LiveProvider, type LiveState, useLiveState } from "./live";
import { type Route, useRoute } from "./router";
import { storedToken, storeToken } from "./session";
import { errorText, ToastProvider } from "./ui";
import { AdminView } from "./views/admin";
import { JobDetailView } from "./views/job-detail";
import { JobsView } from "./views/jobs";
import { PoolsView } from "./views/pools";
import { QueueView } from "./views/queue";
import { SchedulesView } from "./views/schedules";
import { StatsView } from "./views/stats";
import type { ViewProps } from "./views/types";

/**
 * The shell: where the API is, sign-in, the nav and the live indicator around the current view.
 */

interface Session {
  readonly token: string;
  readonly client: JobqClient;
  readonly admin: boolean;
}

/**
 * Checks a token and learns the principal's role with a route that exists anyway: the policy is
 * readable by admins only, so 200 means admin, 403 a user (or reader), 401 a token nobody knows.
 */
async function signIn(config: DashboardConfig, token: string): Promise<Session> {
  const client = new JobqClient({ url: config.apiUrl, token });
  try {
    await client.getPolicy();
    return { token, client, admin: true };
  } catch (error) {
    if (error instanceof JobqApiError && error.status === 403) return { token, client, admin: false };
    throw error;
  }
}

function refusedText(error: unknown): string {
  return error instanceof JobqApiError && error.status === 401
    ? "That token was refused: the API does not know it (401 unauthorized)."
    : `Could not sign in: ${errorText(error)}`;
}

export function App() {
  const [config, setConfig] = useState<DashboardConfig | undefined>();
  const [configError, setConfigError] = useState<unknown>();
  const [session, setSession] = useState<Session | undefined>();
  const [checking, setChecking] = useState(false);
  const [signInError, setSignInError] = useState<string | undefined>();

  const start = (found: DashboardConfig, token: string) => {
    setChecking(true);
    setSignInError(undefined);
    signIn(found, token).then(
      (next) => {
        storeToken(token);
        setSession(next);
        setChecking(false);
      },
      (error: unknown) => {
        if (error instanceof JobqApiError && error.status === 401) storeToken(undefined);
        setSignInError(refusedText(error));
        setChecking(false);
      },
    );
  };

  useEffect(() => {
    loadConfig().then(
      (found) => {
        setConfig(found);
        const token = storedToken();
        if (token) start(found, token);
      },
      (error: unknown) => setConfigError(error),
    );
  }, []);

  return (
    <ToastProvider>
      {configError !== undefined ? (
        <main id="main" class="centered">
          <ErrorNotice error={configError} retry={() => window.location.reload()} />
        </main>
      ) : !config ? (
        <main id="main" class="centered" aria-busy="true">
          Loading…
        </main>
      ) : !session ? (
        <SignIn checking={checking} error={signInError} onSubmit={(token) => start(config, token)} />
      ) : (
        <LiveProvider client={session.client} token={session.token} streamUrl={config.streamUrl}>
          <Shell
            session={session}
            onSignOut={() => {
              storeToken(undefined);
              setSession(undefined);
              setSignInError(undefined);
            }}
          />
        </LiveProvider>
      )}
    </ToastProvider>
  );
}

function SignIn(props: {
  readonly checking: boolean;
  readonly error: string | undefined;
  readonly onSubmit: (token: string) => void;
}) {
  const [token, setToken] = useState("");
  return (
    <main id="main" class="centered">
      <form
        class="card sign-in"
        aria-labelledby="sign-in-title"
        onSubmit={(event) => {
          event.preventDefault();
          if (token.trim() !== "") props.onSubmit(token.trim());
        }}
      >
        <h1 id="sign-in-title">Sign in to jobq</h1>
        <div class="field">
          <label for="token">API token</label>
          <input
            id="token"
            name="token"
            type="password"
            autoComplete="current-password"
            required
            value={token}
            onInput={(event) => setToken((event.currentTarget as HTMLInputElement).value)}
            aria-describedby={props.error ? "sign-in-error" : "token-help"}
            aria-invalid={props.error ? true : undefined}
          />
          <p id="token-help" class="muted small">
            The bearer token you use with the API or the CLI. It is kept for this tab only.
          </p>
        </div>
        {props.error && (
          <p id="sign-in-error" class="notice notice-error" role="alert">
            {props.error}
          </p>
        )}
        <button type="submit" class="button button-primary" disabled={props.checking}>
          {props.checking ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

const NAV: readonly {
  readonly href: string;
  readonly label: string;
  readonly routes: readonly Route["name"][];
}[] = [
  { href: "#/queue", label: "Queue", routes: ["queue"] },
  { href: "#/jobs", label: "Jobs", routes: ["jobs", "job"] },
  { href: "#/pools", label: "Pools", routes: ["pools"] },
  { href: "#/stats", label: "Stats", routes: ["stats"] },
  { href: "#/schedules", label: "Schedules", routes: ["schedules"] },
  { href: "#/admin", label: "Admin", routes: ["admin"] },
];

const LIVE_TEXT: Readonly<Record<LiveState, string>> = {
  connecting: "connecting…",
  open: "live",
  reconnecting: "reconnecting…",
  closed: "offline",
  unavailable: "no live stream",
};

function Shell(props: { readonly session: Session; readonly onSignOut: () => void }) {
  const route = useRoute();
  const live = useLiveState();
  const { client, admin } = props.session;
  const viewProps: ViewProps = useMemo(() => ({ client, admin }), [client, admin]);
  useEffect(() => {
    const title = route.name === "job" ? `Job ${route.id}` : route.name;
    document.title = `${title} · jobq`;
    // Focus moves to the new view's content, as a page load would, for keyboard and screen readers.
    document.getElementById("main")?.focus({ preventScroll: true });
  }, [route.name, route.name === "job" ? route.id : ""]);
  return (
    <>
      <button type="button" class="skip-link" onClick={() => document.getElementById("main")?.focus()}>
        Skip to content
      </button>
      <header class="topbar">
        <a class="brand" href="#/queue">
          jobq
        </a>
        <nav aria-label="Views">
          <ul>
            {NAV.filter((item) => item.href !== "#/admin" || admin).map((item) => (
              <li key={item.href}>
                <a href={item.href} aria-current={item.routes.includes(route.name) ? "page" : undefined}>
                  {item.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="session">
          <span class={`live live-${live}`} role="status" aria-live="polite" data-testid="live">
            <span class="live-dot" aria-hidden="true" />
            {LIVE_TEXT[live]}
          </span>
          <span class="muted small">{admin ? "admin" : "user"}</span>
          <button type="button" class="button" onClick={props.onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <CurrentView route={route} props={viewProps} />
      </main>
    </>
  );
}

function CurrentView({ route, props }: { readonly route: Route; readonly props: ViewProps }) {
  switch (route.name) {
    case "queue":
      return <QueueView {...props} />;
    case "jobs":
      return <JobsView {...props} />;
    case "job":
      return <JobDetailView {...props} id={route.id} />;
    case "pools":
      return <PoolsView {...props} />;
    case "stats":
      return <StatsView {...props} />;
    case "schedules":
      return <SchedulesView {...props} />;
    case "admin":
      return <AdminView {...props} />;
    default:
      return (
        <section>
          <h1>Not found</h1>
          <p>
            There is no view at <code>#{route.path}</code>. <a href="#/queue">Go to the queue</a>.
          </p>
        </section>
      );
  }
}
