import { type ComponentChildren, createContext } from "preact";
import { useCallback, useContext, useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { JobqClient } from "../../client/index";
import { JobStream, resyncWith, type StreamJob, type StreamState } from "../../client/job-stream";

/**
 * One job stream per signed-in page, shared by every view: views subscribe to its job messages
 * and refresh what they show, so nothing needs a reload. The stream reconnects with backoff and
 * catches up through GET /jobs?updatedSince= (client/job-stream.ts); the header shows its state.
 */

export type LiveState = StreamState | "unavailable";
type Listener = (job: StreamJob) => void;

interface Live {
  readonly state: LiveState;
  subscribe(listener: Listener): () => void;
}

const LiveContext = createContext<Live>({ state: "unavailable", subscribe: () => () => undefined });

export function LiveProvider(props: {
  readonly client: JobqClient;
  readonly token: string;
  readonly streamUrl: string | undefined;
  readonly children: ComponentChildren;
}) {
  const { client, token, streamUrl } = props;
  const [state, setState] = useState<LiveState>(streamUrl ? "connecting" : "unavailable");
  const listeners = useRef(new Set<Listener>());
  useEffect(() => {
    if (!streamUrl) return;
    const stream = new JobStream({
      url: streamUrl,
      token,
      // A browser's WebSocket cannot send an Authorization header.
      tokenInQuery: true,
      resync: resyncWith(client),
      onJob: (job) => {
        for (const listener of listeners.current) listener(job);
      },
      onState: (next, error) => {
        if (error) console.warn("jobq stream:", error.message);
        setState(next);
      },
    });
    return () => void stream.close();
  }, [client, token, streamUrl]);
  const subscribe = useCallback((listener: Listener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);
  const live = useMemo<Live>(() => ({ state, subscribe }), [state, subscribe]);
  return <LiveContext.Provider value={live}>{props.children}</LiveContext.Provider>;
}

export function useLiveState(): LiveState {
  return useContext(LiveContext).state;
}

/**
 * Calls refresh (at most once per `delayMs`, trailing) after job messages that `wanted` accepts:
 * a burst of changes becomes one read. Also refreshes when the stream comes back, as what
 * changed meanwhile may not be among what resync hands on.
 */
export function useLiveRefresh(
  refresh: () => void,
  wanted: (job: StreamJob) => boolean = () => true,
  delayMs = 400,
): void {
  const live = useContext(LiveContext);
  const latest = useRef({ refresh, wanted });
  latest.current = { refresh, wanted };
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const schedule = () => {
      if (timer === undefined)
        timer = setTimeout(() => {
          timer = undefined;
          latest.current.refresh();
        }, delayMs);
    };
    const unsubscribe = live.subscribe((job) => {
      if (latest.current.wanted(job)) schedule();
    });
    return () => {
      unsubscribe();
      clearTimeout(timer);
    };
  }, [live.subscribe, delayMs]);
  const wasOpen = useRef(live.state === "open");
  useEffect(() => {
    if (live.state === "open" && !wasOpen.current) latest.current.refresh();
    wasOpen.current = live.state === "open";
  }, [live.state]);
}
