/**
 * The token lives in sessionStorage: gone when the tab closes, never in the page's URL (where it
 * would end up in history, logs and Referer headers).
 */
const KEY = "jobq.token";

export function storedToken(): string | undefined {
  try {
    return sessionStorage.getItem(KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

export function storeToken(token: string | undefined): void {
  try {
    if (token === undefined) sessionStorage.removeItem(KEY);
    else sessionStorage.setItem(KEY, token);
  } catch {
    // Storage disabled: the session lasts as long as the page.
  }
}
