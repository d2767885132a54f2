import { useEffect, useState } from "preact/hooks";
import { parseRoute, type Route } from "./routes";

export { jobHref, parseRoute, type Route } from "./routes";

/** The current hash route, following the page's hashchange events. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
