import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { JobqClient } from "../../client/index";
import { HAS_CHROMIUM, useFixturePage } from "../support/browser";
import { useLocalStack } from "../support/e2e";

/**
 * The dashboard's pools, stats, schedules and admin views in a real browser (Debian's chromium,
 * driven by playwright-core) against the whole local stack: each view mounted alone by a small page
 * (fixtures/web-views/), built with vite, served on one origin with the API behind it as the stack
 * serves the dashboard. What a user sees and does: pools with their nodes and a drain that asks
 * first, stats figures and charts, a schedule created (its API problems shown by the field), toggled,
 * triggered and deleted, the policy editor's validation and save, a quota's 80 % warning, the admins-only
 * notice, and no view wider than a phone. Every wait has a deadline; nothing asserts on timing.
 */

const ADMIN = "web-views-admin-token";
const USER = "web-views-user-token";
const USER_PRINCIPAL = `web-views-user-${Date.now()}`;
const FIXTURE = fileURLToPath(new URL("./fixtures/web-views/", import.meta.url));

const e2e = useLocalStack(ADMIN, {
  tablePrefix: "jobq-e2e-webviews-",
  tokens: new Map([
    [ADMIN, { principal: `web-views-admin-${Date.now()}`, role: "admin" }],
    [USER, { principal: USER_PRINCIPAL, role: "user" }],
  ]),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
  sweepSeconds: 1,
});

const dashboard = useFixturePage(FIXTURE, () => e2e.stack.url, "web-views");

async function open(
  view: string,
  options: { readonly token?: string; readonly admin?: boolean; readonly phone?: boolean } = {},
): Promise<Page> {
  const page = await dashboard.browser.newPage({
    viewport: options.phone ? { width: 390, height: 844 } : { width: 1280, height: 800 },
  });
  const admin = options.admin ?? true;
  const query = new URLSearchParams({
    view,
    token: options.token ?? (admin ? ADMIN : USER),
    admin: admin ? "1" : "0",
  });
  await page.goto(`${dashboard.origin}/?${query}`);
  return page;
}

/** The page's document as far as these checks read it (this file compiles without the DOM lib). */
interface PageDocument {
  readonly document: {
    readonly activeElement: unknown;
    readonly documentElement: { readonly scrollWidth: number; readonly clientWidth: number };
  };
}

/** How much wider than the viewport the page is (0: nothing scrolls sideways). */
function overflow(page: Page): Promise<number> {
  return page.evaluate(() => {
    const root = (globalThis as unknown as PageDocument).document.documentElement;
    return root.scrollWidth - root.clientWidth;
  });
}

describe.runIf(HAS_CHROMIUM)("the dashboard's pools, stats, schedules and admin views", () => {
  it("pools: each pool's capacity and nodes; an admin's drain asks first and backs out on Escape", async () => {
    const page = await open("pools");
    await page.getByRole("heading", { name: "Pool cpu" }).waitFor();
    await page.getByRole("heading", { name: "Pool gpu" }).waitFor();
    const cpuNodes = page.getByRole("table", { name: "Nodes of pool cpu" });
    await cpuNodes.getByText("Up").first().waitFor();
    expect(await cpuNodes.getByRole("row").count()).toBe(3); // the header and the default pool's 2 nodes
    await expect.poll(() => page.getByText(/vCPU in use/).count()).toBeGreaterThan(0);

    const drain = page.getByRole("button", { name: /^Drain node cpu-/ }).first();
    await drain.click();
    const confirm = page.getByRole("button", { name: "Drain node", exact: true });
    await confirm.waitFor();
    expect(
      await confirm.evaluate((el) => el === (globalThis as unknown as PageDocument).document.activeElement),
    ).toBe(true);
    await page.keyboard.press("Escape");
    await confirm.waitFor({ state: "detached" });
    await page.close();

    const user = await open("pools", { admin: false });
    await user.getByRole("heading", { name: "Pool cpu" }).waitFor();
    expect(await user.getByRole("button", { name: /^Drain/ }).count()).toBe(0);
    await user.close();
  }, 60_000);

  it("stats: current figures as text, the charts with their tables, and the figures per pool", async () => {
    await e2e.submit({ type: "echo", payload: { from: "web-views" } });
    const page = await open("stats");
    await page.getByRole("heading", { name: "Now" }).waitFor();
    await page.getByText("Completed, last hour").waitFor();
    for (const title of [
      "Jobs completed and failed per minute",
      "Queue wait percentiles over the last 1h, sampled",
    ]) {
      const figure = page.getByRole("figure", { name: title });
      await figure.waitFor();
      // uPlot draws on a canvas, hidden from screen readers; the table under it says the same.
      expect(await figure.locator("canvas").count()).toBe(1);
      expect(await figure.getByText(/Data as a table/).count()).toBe(1);
    }
    const pools = page.getByRole("table", { name: "Figures per pool over the last 1h" });
    await pools.getByRole("rowheader", { name: "cpu" }).waitFor();
    await pools.getByRole("rowheader", { name: "gpu" }).waitFor();

    await page.getByLabel("Window").selectOption("5m");
    await page.getByRole("table", { name: "Figures per pool over the last 5m" }).waitFor();
    await page.close();
  }, 60_000);

  it("schedules: the API's problems by their fields, then create, disable, trigger and delete", async () => {
    const page = await open("schedules", { token: USER, admin: false });
    await page.getByRole("button", { name: "New schedule" }).click();
    await page.getByLabel("Name").fill("web-views nightly");
    await page.getByLabel("Cron").fill("61 * * * *");
    await page.getByLabel("Timezone").fill("Mars/Olympus");
    await page.getByLabel(/Job template/).fill('{"type": "echo", "runAt": "2030-01-01T00:00:00Z"}');
    await page.getByRole("button", { name: "Create schedule" }).click();

    await page.getByText("The schedule was not created").waitFor();
    expect(await page.getByLabel("Cron").getAttribute("aria-invalid")).toBe("true");
    expect(await page.locator("#sched-cron-error").textContent()).toContain("61");
    expect(await page.getByLabel("Timezone").getAttribute("aria-invalid")).toBe("true");
    expect(await page.locator("#sched-job-error").textContent()).toContain("job.runAt");
    expect(await page.getByLabel("Name").getAttribute("aria-invalid")).toBe("false");

    await page.getByLabel("Cron").fill("0 2 * * *");
    await page.getByLabel("Timezone").fill("Europe/Berlin");
    await page.getByLabel(/Job template/).fill('{"type": "echo", "payload": {"from": "web-views"}}');
    await page.getByRole("button", { name: "Create schedule" }).click();
    await page.getByText(/Schedule web-views nightly created/).waitFor();
    const row = page.getByRole("row", { name: /web-views nightly/ });
    await row.getByText("Europe/Berlin").waitFor();

    await page.getByRole("checkbox", { name: "Enabled: web-views nightly" }).uncheck();
    await page.getByText("Schedule web-views nightly disabled.").waitFor();
    await row.getByText("(disabled)").waitFor();

    await page.getByRole("button", { name: "Trigger web-views nightly now" }).click();
    await page.getByText(/Triggered web-views nightly: job job_/).waitFor();
    await row.getByText(/\(manual\)/).waitFor();

    await page.getByRole("button", { name: "Delete web-views nightly" }).click();
    await page.getByRole("button", { name: "Delete schedule" }).click();
    await page.getByText("Schedule web-views nightly deleted.").waitFor();
    await row.waitFor({ state: "detached" });
    await page.close();
  }, 60_000);

  it("admin: the policy's problems from the API, a save that says so, and a quota's 80 % warning", async () => {
    const page = await open("admin");
    const editor = page.getByLabel(/Policy \(JSON\)/);
    await expect.poll(() => editor.inputValue()).toContain('"algorithm"');
    const policy = JSON.parse(await editor.inputValue()) as Record<string, unknown>;

    await editor.fill(JSON.stringify({ ...policy, algorithm: "lottery", agingSecondsPerStep: -1 }));
    await page.getByRole("button", { name: "Save policy" }).click();
    await page.getByText("The policy was not saved").waitFor();
    const problems = await page.locator("#policy-problems").textContent();
    expect(problems).toContain("algorithm");
    expect(problems).toContain("agingSecondsPerStep");

    await editor.fill(JSON.stringify({ ...policy, algorithm: "fair-share" }));
    await page.getByRole("button", { name: "Save policy" }).click();
    await page.getByText(/Policy saved at/).waitFor();
    expect((await e2e.client.getPolicy()).algorithm).toBe("fair-share");

    // One job not started yet against a limit of one: 100 % of maxQueuedJobs.
    await e2e.client.putQuota(USER_PRINCIPAL, { maxQueuedJobs: 1 });
    const userClient = new JobqClient({ url: e2e.stack.url, token: USER });
    await userClient.submit({ type: "echo", runAt: new Date(Date.now() + 86_400_000).toISOString() });
    await page.getByLabel("Principal", { exact: true }).fill(USER_PRINCIPAL);
    await page.getByRole("button", { name: "Look up" }).click();
    await page.getByText(/Warning:/).waitFor();
    const usage = page.getByRole("table", { name: /Usage of/ });
    await usage.getByText("limit reached").waitFor();

    await page.getByLabel("GPU-seconds per day").fill("3600");
    await page.getByRole("button", { name: "Save limits" }).click();
    await page.getByText(`Limits of ${USER_PRINCIPAL} saved.`).waitFor();
    expect((await e2e.client.getQuota(USER_PRINCIPAL)).limits).toMatchObject({
      dailyGpuSeconds: 3600,
      maxQueuedJobs: 1,
    });
    await page.close();

    const user = await open("admin", { admin: false });
    await user.getByText("Admins only.").waitFor();
    expect(await user.getByRole("button").count()).toBe(0);
    await user.close();
  }, 60_000);

  it("no view is wider than a 390 px phone", async () => {
    for (const [view, ready] of [
      ["pools", "Pool cpu"],
      ["stats", "Over time"],
      ["schedules", "Schedules"],
      ["admin", "Quotas"],
    ] as const) {
      const page = await open(view, { phone: true });
      await page.getByRole("heading", { name: ready }).waitFor();
      expect(await overflow(page), view).toBeLessThanOrEqual(0);
      await page.close();
    }
  }, 60_000);
});
