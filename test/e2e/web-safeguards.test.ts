import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { policySchema } from "../../core/policy";
import { HAS_CHROMIUM, useFixturePage } from "../support/browser";
import { TERMINAL, untilWithin, useLocalStack } from "../support/e2e";

/**
 * Issue 13's safeguards in the dashboard, in a real browser (Debian's chromium, driven by
 * playwright-core) against the whole local stack: the job detail, jobs, admin and stats views, each
 * mounted alone by a small page (fixtures/web-safeguards/), built with vite, served on one origin
 * with the API behind it as the stack serves the dashboard. What a user sees and does: an array
 * job's children (each linking to its page) and its cost, the jobs list filtered by project, the
 * admin's circuits panel with a breaker a failing type opened and a reset that asks first, and the
 * stats view's cost per owner and project. Every wait has a deadline; nothing asserts on timing.
 */

const ADMIN = "web-safeguards-admin-token";
const USER = "web-safeguards-user-token";
const run = Date.now().toString(36);
const ADMIN_PRINCIPAL = `web-safeguards-admin-${run}`;
const PROJECT = `atlas-${run}`;
const FIXTURE = fileURLToPath(new URL("./fixtures/web-safeguards/", import.meta.url));

const e2e = useLocalStack(ADMIN, {
  tablePrefix: "jobq-e2e-websafeguards-",
  tokens: new Map([
    [ADMIN, { principal: ADMIN_PRINCIPAL, role: "admin" }],
    [USER, { principal: `web-safeguards-user-${run}`, role: "user" }],
  ]),
  policy: policySchema.parse({
    types: { fail: { circuitBreaker: { failures: 5, windowSeconds: 600, openSeconds: 3600 } } },
  }),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
  sweepSeconds: 1,
});

const dashboard = useFixturePage(FIXTURE, () => e2e.stack.url, "web-safeguards");

async function open(
  view: string,
  options: {
    readonly token?: string;
    readonly admin?: boolean;
    readonly phone?: boolean;
    readonly id?: string;
  } = {},
): Promise<Page> {
  const page = await dashboard.browser.newPage({
    viewport: options.phone ? { width: 390, height: 844 } : { width: 1280, height: 800 },
  });
  const admin = options.admin ?? true;
  const query = new URLSearchParams({
    view,
    token: options.token ?? (admin ? ADMIN : USER),
    admin: admin ? "1" : "0",
    id: options.id ?? "",
  });
  await page.goto(`${dashboard.origin}/?${query}`);
  return page;
}

const until = untilWithin(120_000);

/** The array job every test reads: 3 echo children in the project, ended. */
let parent = "";
let arrayEnded: Promise<void> | undefined;
function arrayJob(): Promise<void> {
  arrayEnded ??= (async () => {
    parent = (
      await e2e.submit({ type: "echo", payload: { from: "web" }, project: PROJECT, array: { size: 3 } })
    ).id;
    await until(
      "the array's parent ends",
      () => e2e.getJob(parent),
      (job) => TERMINAL.includes(job.status),
    );
  })();
  return arrayEnded;
}

describe.runIf(HAS_CHROMIUM)("the dashboard's views of issue 13's safeguards", () => {
  it("job detail: an array parent's children, each a link to its page, and the job's cost by service", async () => {
    e2e.showWorkersOnFailure();
    await arrayJob();
    const page = await open("job", { id: parent });
    const children = page.getByRole("table", { name: `Children of ${parent}` });
    await children.waitFor();
    for (const index of [0, 1, 2]) {
      const link = children.getByRole("link", { name: `${parent}-${index}`, exact: true });
      expect(await link.getAttribute("href")).toBe(`#/jobs/${parent}-${index}`);
    }
    expect(await children.getByText("completed", { exact: true }).count()).toBe(3);
    await page.getByText(/3 children, 0 not yet completed/).waitFor();

    await page.getByRole("heading", { name: "Cost", exact: true }).waitFor();
    const cost = page.getByRole("table", { name: "Cost of the job by service" });
    for (const service of ["Step Functions", "DynamoDB", "SQS", "Lambda", "EventBridge", "API", "Compute"])
      await cost.getByRole("cell", { name: service, exact: true }).waitFor();
    const dynamodb = await cost.getByRole("row", { name: /DynamoDB/ }).textContent();
    expect(dynamodb).toMatch(/write units.*\$0\.\d+/);
    const total = (await e2e.client.getJob(parent)).cost?.totalUsd ?? 0;
    expect(total).toBeGreaterThan(0);
    await page
      .getByText(`$${total.toFixed(6)}`)
      .first()
      .waitFor();
    await page.close();

    // A child says whose child it is, and links back.
    const child = await open("job", { id: `${parent}-1` });
    const back = child.getByRole("link", { name: parent, exact: true });
    await back.waitFor();
    expect(await back.getAttribute("href")).toBe(`#/jobs/${parent}`);
    await child.getByText(PROJECT, { exact: true }).waitFor();
    await child.close();
  }, 180_000);

  it("jobs: the project filter lists the project's jobs only", async () => {
    await arrayJob();
    const other = (await e2e.submit({ type: "echo", payload: { from: "web, no project" } })).id;
    const page = await open("jobs");
    await page.locator(`tr[data-job-id="${other}"]`).waitFor();
    await page.getByLabel("Project").fill(PROJECT);
    await page.getByRole("button", { name: "Apply" }).click();
    await page.locator(`tr[data-job-id="${other}"]`).waitFor({ state: "detached" });
    const rows = page.locator("tr[data-job-id]");
    await expect.poll(() => rows.count()).toBe(4);
    const ids = await rows.evaluateAll((list) => list.map((row) => row.getAttribute("data-job-id")));
    expect(ids.sort()).toEqual([parent, `${parent}-0`, `${parent}-1`, `${parent}-2`].sort());
    await page.close();
  }, 180_000);

  it("admin: the circuits panel shows the breaker a failing type opened; a reset asks first, then closes it", async () => {
    e2e.showWorkersOnFailure();
    for (let i = 0; i < 5; i++) await e2e.submit({ type: "fail", payload: {}, retry: { maxAttempts: 1 } });
    const opened = await until(
      "the fifth failure opens the breaker",
      () => e2e.client.listCircuits(),
      (list) => list.items.some((c) => c.type === "fail" && c.state === "open"),
    );
    expect(opened.items.find((c) => c.type === "fail")?.failures).toBe(5);

    const page = await open("admin");
    const panel = page.getByRole("table", { name: "Circuit breakers per task type" });
    const row = panel.getByRole("row", { name: /fail/ });
    await row.getByText("open", { exact: true }).waitFor();
    expect(await row.getByRole("cell", { name: "5", exact: true }).count()).toBe(1);

    await page.getByRole("button", { name: "Reset circuit fail" }).click();
    const confirm = page.getByRole("button", { name: "Reset breaker" });
    await confirm.waitFor();
    expect(
      await confirm.evaluate((el) => el === (globalThis as unknown as PageDocument).document.activeElement),
    ).toBe(true);
    // Escape backs out: nothing is sent
    await page.keyboard.press("Escape");
    await confirm.waitFor({ state: "detached" });
    expect((await e2e.client.listCircuits()).items.find((c) => c.type === "fail")?.state).toBe("open");

    await page.getByRole("button", { name: "Reset circuit fail" }).click();
    await page.getByRole("button", { name: "Reset breaker" }).click();
    await page.getByText("Circuit fail reset: closed.").waitFor();
    await row.getByText("closed", { exact: true }).waitFor();
    expect((await e2e.client.listCircuits()).items.find((c) => c.type === "fail")).toMatchObject({
      state: "closed",
      failures: 0,
    });
    await page.close();
  }, 240_000);

  it("stats: the cost of ended jobs today and this week, per owner and per project", async () => {
    await arrayJob();
    await until(
      "the project's cost sums count its jobs",
      () => e2e.client.stats(),
      (stats) => (stats.cost.today.byProject[PROJECT]?.jobs ?? 0) >= 3,
    );
    const page = await open("stats");
    await page.getByRole("heading", { name: "Cost", exact: true }).waitFor();
    const projects = page.getByRole("table", { name: "Cost per project" });
    const projectRow = projects.getByRole("row", { name: new RegExp(PROJECT) });
    await projectRow.waitFor();
    expect(await projectRow.textContent()).toMatch(/\$0\.\d+/);
    const owners = page.getByRole("table", { name: "Cost per owner" });
    await owners.getByRole("rowheader", { name: ADMIN_PRINCIPAL }).waitFor();
    await page.getByText("Cost this week", { exact: true }).first().waitFor();
    expect(await overflowOf(page)).toBeLessThanOrEqual(0);
    await page.close();
  }, 180_000);

  it("no new panel is wider than a 390 px phone", async () => {
    await arrayJob();
    for (const [view, ready] of [
      ["job", "Children"],
      ["admin", "Circuit breakers"],
      ["stats", "Cost"],
    ] as const) {
      const page = await open(view, { phone: true, id: parent });
      await page.getByRole("heading", { name: ready, exact: true }).waitFor();
      expect(await overflowOf(page), view).toBeLessThanOrEqual(0);
      await page.close();
    }
  }, 120_000);
});

/** The page's document as far as these checks read it (this file compiles without the DOM lib). */
interface PageDocument {
  readonly document: {
    readonly documentElement: { readonly scrollWidth: number; readonly clientWidth: number };
    readonly activeElement: unknown;
  };
}

/** How much wider than the viewport the page is (0: nothing scrolls sideways). */
function overflowOf(page: Page): Promise<number> {
  return page.evaluate(() => {
    const root = (globalThis as unknown as PageDocument).document.documentElement;
    return root.scrollWidth - root.clientWidth;
  });
}
