import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { JobqClient } from "../../client";
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM } from "../support/browser";
import { untilWithin, useLocalStack } from "../support/e2e";

/**
 * The web dashboard in a real browser (Debian's chromium driven by playwright-core) against the
 * real local stack, served as under `npm start`: sign-in, live updates without a reload, reorder
 * and cancel from the UI (checked through the API), the job detail's log, a refused token; and a
 * screenshot of every view under test-artifacts/web/. Every wait has a generous deadline; nothing
 * asserts on timing (bench/ measures latency).
 */

const ARTIFACTS = join(process.cwd(), "test-artifacts", "web");
const ADMIN_TOKEN = "web-e2e-admin-token";
const WAIT_MS = 60_000;
const e2e = useLocalStack(ADMIN_TOKEN, {
  tablePrefix: "jobq-e2e-web-",
  tokens: new Map([[ADMIN_TOKEN, { principal: `web-admin-${Date.now()}`, role: "admin" }]]),
  // One small node: a single sleeping job fills the pool, so what follows it stays queued.
  pools: [{ name: "cpu", labels: {}, nodes: 1, node: { cpu: 1, memoryMb: 1024, gpu: 0 } }],
  webDir: inject("webDir"),
  heartbeatSeconds: 6,
  sweepSeconds: 2,
  workerShutdownGraceSeconds: 1,
  workerPollWaitSeconds: 2,
});

const until = untilWithin(WAIT_MS);

/** A GET with the path sent exactly as written (fetch would resolve `..` before sending). */
function rawGet(base: string, path: string): Promise<{ status: number; contentType: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    get({ host: url.hostname, port: url.port, path }, (response) => {
      response.resume();
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, contentType: response.headers["content-type"] ?? "" }),
      );
    }).on("error", reject);
  });
}

function row(page: Page, id: string) {
  return page.locator(`tr[data-job-id="${id}"]`);
}

async function queuePositions(client: JobqClient): Promise<Map<string, number>> {
  const queue = await client.queue({ pool: "cpu" });
  return new Map(queue.queued.map((entry) => [entry.id, entry.position]));
}

describe("the dashboard on the local stack", () => {
  it("serves the page at / and keeps every other unknown path a JSON 404", async () => {
    const index = await fetch(`${e2e.stack.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toMatch(/^text\/html/);
    expect(index.headers.get("cache-control")).toBe("no-cache");
    const script = /src="\.\/assets\/([^"]+\.js)"/.exec(await index.text())?.[1];
    expect(script).toBeDefined();
    const asset = await fetch(`${e2e.stack.url}/assets/${script}`);
    expect(asset.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect(asset.headers.get("cache-control")).toContain("immutable");
    await asset.arrayBuffer();
    for (const path of [
      "/assets/..%2Fpackage.json",
      "/assets/../package.json",
      "/assets/%2e%2e/index.html",
      "/assets/.source-hash",
      "/assets/",
      "/assets/nope.js",
      "/index.html",
      "/.source-hash",
    ]) {
      const missing = await rawGet(e2e.stack.url, path);
      expect(missing.status, path).toBe(404);
      expect(missing.contentType, path).toMatch(/^application\/json/);
    }
  });
});

describe.runIf(HAS_CHROMIUM)("the web dashboard in chromium", () => {
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let filler: string | undefined;
  /** The job cancelled from the queue view, retried from the jobs view. */
  let cancelled: string | undefined;

  const shoot = (name: string, fullPage = false) =>
    page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage });

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    profile = await mkdtemp(join(tmpdir(), "jobq-chromium-"));
    // A persistent context on a fresh directory: the profile (--user-data-dir) is this run's alone.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS],
      viewport: { width: 1280, height: 800 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    // Warm-up: the routes the dashboard calls, so the handlers' first load is not inside a wait.
    const client = e2e.client;
    await Promise.all([client.queue(), client.getPolicy(), client.listJobs({ limit: 1 }), client.pools()]);
  }, 120_000);

  afterAll(async () => {
    if (filler) await e2e.client.cancel(filler).catch(() => undefined);
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it("refuses a bad token with an error, not a blank page", async () => {
    await page.goto(`${e2e.stack.url}/`);
    await page.getByLabel("API token").fill("not-a-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor({ timeout: WAIT_MS });
    expect(await alert.textContent()).toContain("refused");
    expect(page.url()).not.toContain("not-a-token");
    await shoot("sign-in-error");
  });

  it("signs in, and a job submitted through the API appears in the queue without a reload", async () => {
    // Prepare: the pool filled, so the next job waits in the queue
    const client = e2e.client;
    filler = (await client.submit({ type: "sleep", payload: { seconds: 300 }, pool: "cpu" })).id;
    await until(
      "the filler runs",
      () => client.getJob(filler ?? ""),
      (job) => job.status === "running",
    );

    // Act: sign in, wait for the stream, then submit
    await page.getByLabel("API token").fill(ADMIN_TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Queue", level: 1 }).waitFor({ timeout: WAIT_MS });
    await page
      .getByTestId("live")
      .filter({ hasText: /^live$/ })
      .waitFor({ timeout: WAIT_MS });
    expect(page.url()).not.toContain(ADMIN_TOKEN);
    // A reload would lose this mark.
    await page.evaluate(() => {
      (globalThis as { jobqMark?: number }).jobqMark = 1;
    });
    const job = await client.submit({ type: "log", payload: { lines: 3 }, pool: "cpu" });

    // Assess
    await row(page, job.id).waitFor({ timeout: WAIT_MS });
    expect(await row(page, job.id).textContent()).toContain(e2e.stack.tokens.get(ADMIN_TOKEN)?.principal);
    expect(await page.evaluate(() => (globalThis as { jobqMark?: number }).jobqMark)).toBe(1);
  });

  it("reorders by drag and drop and cancels from the UI, changing the server's state", async () => {
    const client = e2e.client;
    const first = await client.submit({ type: "echo", name: "first", pool: "cpu" });
    const second = await client.submit({ type: "echo", name: "second", pool: "cpu" });
    await row(page, second.id).waitFor({ timeout: WAIT_MS });
    const before = await queuePositions(client);
    expect(before.get(second.id) ?? 0).toBeGreaterThan(before.get(first.id) ?? 0);

    // Act: drag the second onto the first (it goes just ahead of it)
    await row(page, second.id).dragTo(row(page, first.id));

    // Assess: the server's queue has it ahead now
    await until(
      "the second job ahead of the first in GET /queue",
      () => queuePositions(client),
      (positions) => (positions.get(second.id) ?? 0) < (positions.get(first.id) ?? 0),
    );
    // The keyboard way: the first one's "up" button puts it back ahead
    await page.getByRole("button", { name: `Move ${first.id} up` }).waitFor({ timeout: WAIT_MS });
    await until(
      "the view showing the new order",
      () => row(page, second.id).locator("td").first().textContent(),
      (text) => Number(text) < (before.get(second.id) ?? 0),
    );
    await page.getByRole("button", { name: `Move ${first.id} up` }).click();
    await until(
      "the first job back ahead in GET /queue",
      () => queuePositions(client),
      (positions) => (positions.get(first.id) ?? 0) < (positions.get(second.id) ?? 0),
    );
    await shoot("queue");
    await page.setViewportSize({ width: 390, height: 844 });
    await shoot("queue-phone");
    await page.setViewportSize({ width: 1280, height: 800 });

    // Act: cancel the first from its row
    await row(page, first.id)
      .getByRole("button", { name: `Cancel ${first.id}` })
      .click();

    // Assess
    await until(
      "the first job cancelled",
      () => client.getJob(first.id),
      (job) => job.status === "cancelled",
    );
    cancelled = first.id;
    await row(page, first.id).waitFor({ state: "detached", timeout: WAIT_MS });
  });

  it("shows a job's detail follow it to completed, with its log lines", async () => {
    const client = e2e.client;
    const queued = await client.queue({ pool: "cpu" });
    const logJob = queued.queued.find((entry) => entry.type === "log");
    expect(logJob).toBeDefined();
    const id = logJob?.id ?? "";

    // Act: open its detail from the queue, then free the pool
    await row(page, id).getByRole("link").first().click();
    await page.getByRole("heading", { name: "Timeline" }).waitFor({ timeout: WAIT_MS });
    await client.cancel(filler ?? "");
    filler = undefined;

    // Assess: completed and its lines shown, without a reload
    await page.locator(".summary .status-completed").waitFor({ timeout: WAIT_MS });
    await page.getByText("log line 3 of 3").waitFor({ timeout: WAIT_MS });
    expect(await page.getByRole("log").textContent()).toContain("log line 1 of 3");
    expect(await page.evaluate(() => (globalThis as { jobqMark?: number }).jobqMark)).toBe(1);
    await shoot("job-detail", true);
  });

  it("shows a job's place in its DAG: what it waits on and what waits on it", async () => {
    const client = e2e.client;
    const batch = await client.submitBatch({
      jobs: [
        { ref: "parent", type: "echo", name: "parent", pool: "cpu" },
        { ref: "child", type: "echo", name: "child", pool: "cpu", dependsOn: ["parent"] },
      ],
    });
    const child = batch.refs.child ?? "";
    const parent = batch.refs.parent ?? "";
    await until(
      "the child completed",
      () => client.getJob(child),
      (job) => job.status === "completed",
    );

    await page.evaluate((hash) => {
      (globalThis as unknown as { location: { hash: string } }).location.hash = hash;
    }, `#/jobs/${child}`);

    const waitsOn = page.locator(`a.dag-node[href="#/jobs/${parent}"]`);
    await waitsOn.waitFor({ timeout: WAIT_MS });
    expect(await waitsOn.textContent()).toContain("parent");
    await shoot("job-dag", true);
  });

  it("retries a cancelled job from the jobs view", async () => {
    const id = cancelled ?? "";
    await page.getByRole("navigation", { name: "Views" }).getByRole("link", { name: "Jobs" }).click();
    await page.getByLabel("Status").selectOption("cancelled");
    await page.getByRole("button", { name: "Apply" }).click();
    await row(page, id).getByRole("button", { name: "Retry" }).click();

    await until(
      "the retried job completed",
      () => e2e.client.getJob(id),
      (job) => job.status === "completed",
    );
  });

  it.each([
    ["jobs", "Jobs"],
    ["pools", "Pools"],
    ["stats", "Stats"],
    ["schedules", "Schedules"],
    ["admin", "Admin"],
  ])("renders the %s view", async (view, heading) => {
    await page.getByRole("navigation", { name: "Views" }).getByRole("link", { name: heading }).click();
    await page.getByRole("heading", { name: heading, level: 1 }).waitFor({ timeout: WAIT_MS });
    expect(page.url()).toContain(`#/${view}`);
    if (view === "jobs") await page.locator("tr[data-job-id]").first().waitFor({ timeout: WAIT_MS });
    // The screenshot shows the view's data, not its loading lines (stats can take a moment; the
    // admin view loads the policy and the circuit breakers at once, so count them all).
    const loading = page.locator("main [role=status]", { hasText: "Loading" });
    await expect.poll(() => loading.count(), { timeout: WAIT_MS }).toBe(0);
    await shoot(view);
  });

  it("signs out: the token leaves the tab's storage and the sign-in form is back", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API token").waitFor({ timeout: WAIT_MS });
    expect(
      await page.evaluate(
        () => (globalThis as unknown as { sessionStorage: { length: number } }).sessionStorage.length,
      ),
    ).toBe(0);
  });
});
