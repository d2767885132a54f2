import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiPrincipal } from "../../local/config";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  type BatchResult,
  expectError,
  getJob,
  type Job,
  listAll,
  PrincipalPool,
  submitJob,
  uniqueType,
} from "../support/jobs";

/**
 * Projects through HTTP (issue 13, item 4): a project-bound token's jobs get its project and may
 * not name another (403); an unbound principal tags any; GET /jobs?project=; the project quota
 * routes and who may use them; a project's maxPriority at submit; POST /admin/tokens binding a
 * token in the Tokens table (the AWS authorizer's path).
 */

interface QuotaView {
  principal: string;
  limits: Record<string, number | null>;
  used: { todayGpuSeconds: number; weekGpuSeconds: number; queuedJobs: number };
  warning: boolean;
}

const RUN = randomBytes(4).toString("hex");
const ML = `ml-${RUN}`;
const VISION = `vision-${RUN}`;
const people = new PrincipalPool("projects-api");
/** Bound to ML: a user, a reader, and a user of another principal. */
const MEMBER: Actor = { principal: `member-${RUN}`, token: `member-ml-${RUN}` };
const OTHER_MEMBER: Actor = { principal: `other-${RUN}`, token: `other-ml-${RUN}` };
const READER: Actor = { principal: `member-${RUN}`, token: `reader-ml-${RUN}` };
const VISIONARY: Actor = { principal: `visionary-${RUN}`, token: `visionary-${RUN}` };
const OUTSIDER: Actor = { principal: `outsider-${RUN}`, token: `outsider-${RUN}` };

let api: TestApi;

beforeAll(async () => {
  const bound: Record<string, ApiPrincipal> = {
    [MEMBER.token]: { principal: MEMBER.principal, role: "user", project: ML },
    [OTHER_MEMBER.token]: { principal: OTHER_MEMBER.principal, role: "user", project: ML },
    [READER.token]: { principal: READER.principal, role: "reader", project: ML },
    [VISIONARY.token]: { principal: VISIONARY.principal, role: "user", project: VISION },
    [OUTSIDER.token]: { principal: OUTSIDER.principal, role: "user" },
  };
  api = await startTestApi({ ...people.tokens(), ...bound });
});
afterAll(async () => {
  await api?.close();
});

const post = <T = Job>(actor: Actor, path: string, body: unknown) =>
  api.request<T>("POST", path, { token: actor.token, body });
const quota = (method: "GET" | "PUT", subject: string, actor: Actor, body?: unknown) =>
  api.request<QuotaView>(method, `/quotas/${subject}`, { token: actor.token, body });

describe("jobs of a project-bound token", () => {
  it("get the token's project whether or not they name it, and show it in the job view", async () => {
    // Act
    const unnamed = await submitJob(api, MEMBER, { type: "echo" });
    const named = await submitJob(api, MEMBER, { type: "echo", project: ML });
    const read = await getJob(api, MEMBER, unnamed.id);

    // Assess
    expect(unnamed.project).toBe(ML);
    expect(named.project).toBe(ML);
    expect(read.project).toBe(ML);
  });

  it("may not name another project: 403 forbidden, and a batch with one such job creates none", async () => {
    // Prepare
    const type = uniqueType("projects-refused");

    // Act
    const single = await post(MEMBER, "/jobs", { type, project: VISION });
    const batch = await post<BatchResult>(MEMBER, "/jobs/batch", {
      jobs: [
        { ref: "a", type },
        { ref: "b", type, project: VISION },
      ],
    });
    const listed = await listAll<Job>(api, MEMBER, "/jobs", { type });

    // Assess
    const body = expectError(single, 403, "forbidden");
    expect(body.error.details).toEqual({ project: VISION, boundTo: ML });
    expectError(batch, 403, "forbidden");
    expect(listed.items).toEqual([]);
  });

  it("an unbound principal tags any project, or none; a malformed name is a 400", async () => {
    // Act
    const tagged = await submitJob(api, OUTSIDER, { type: "echo", project: VISION });
    const plain = await submitJob(api, OUTSIDER, { type: "echo" });
    const malformed = await post(OUTSIDER, "/jobs", { type: "echo", project: "Not.A.Project" });

    // Assess
    expect(tagged.project).toBe(VISION);
    expect(plain.project).toBeNull();
    expectError(malformed, 400, "validation_failed");
  });
});

describe("GET /jobs?project=", () => {
  it("lists a project's jobs, newest first: an admin sees every member's, a user their own", async () => {
    // Prepare: a project of its own, with jobs of two bound members and an unbound tagger.
    const project = `list-${RUN}`;
    const tagger = people.next();
    const first = await submitJob(api, tagger, { type: "echo", project });
    const second = await submitJob(api, tagger, { type: "sleep", payload: { seconds: 0 }, project });
    const elsewhere = await submitJob(api, tagger, { type: "echo", project: `${project}-x` });
    const unlabelled = await submitJob(api, tagger, { type: "echo" });
    const someoneElses = await submitJob(api, ADMIN, { type: "echo", project });

    // Act
    const byAdmin = await listAll<Job>(api, ADMIN, "/jobs", { project, limit: "1" });
    const byTagger = await listAll<Job>(api, tagger, "/jobs", { project });
    const typed = await listAll<Job>(api, ADMIN, "/jobs", { project, type: "sleep" });
    const malformed = await api.request("GET", "/jobs?project=UPPER", { token: ADMIN.token });

    // Assess
    expect(byAdmin.items.map((j) => j.id)).toEqual([someoneElses.id, second.id, first.id]);
    expect(byTagger.items.map((j) => j.id)).toEqual([second.id, first.id]);
    expect(typed.items.map((j) => j.id)).toEqual([second.id]);
    expect(byAdmin.items.map((j) => j.id)).not.toContain(elsewhere.id);
    expect(byAdmin.items.map((j) => j.id)).not.toContain(unlabelled.id);
    expectError(malformed, 400, "validation_failed");
  });
});

describe("PUT and GET /quotas/project:{name}", () => {
  it("an admin sets a project's quota; admins and tokens bound to it read it, others get 403", async () => {
    // Prepare
    const subject = `project:${ML}`;

    // Act
    const put = await quota("PUT", subject, ADMIN, { dailyGpuSeconds: 3600 });
    const byMember = await quota("GET", subject, MEMBER);
    const byReader = await quota("GET", subject, READER);
    const byAdmin = await quota("GET", subject, ADMIN);
    const byOtherProject = await quota("GET", subject, VISIONARY);
    const byUnbound = await quota("GET", subject, OUTSIDER);
    const putByMember = await quota("PUT", subject, MEMBER, { dailyGpuSeconds: 1 });

    // Assess
    expect(put.status).toBe(200);
    expect(put.json).toMatchObject({
      principal: subject,
      limits: { dailyGpuSeconds: 3600, weeklyGpuSeconds: null, maxQueuedJobs: null, maxPriority: null },
      used: { todayGpuSeconds: 0, weekGpuSeconds: 0, queuedJobs: 0 },
      warning: false,
    });
    expect(byMember.status).toBe(200);
    expect(byMember.json).toEqual(put.json);
    expect(byReader.status).toBe(200);
    expect(byAdmin.json).toEqual(put.json);
    expectError(byOtherProject, 403, "forbidden");
    expectError(byUnbound, 403, "forbidden");
    expectError(putByMember, 403, "forbidden");
    expect((await quota("GET", subject, ADMIN)).json.limits.dailyGpuSeconds).toBe(3600);
  });

  it("refuses a malformed project name and a maxQueuedJobs it could not enforce, with 400", async () => {
    // Act
    const malformed = await quota("GET", "project:Bad.Name", ADMIN);
    const queued = await quota("PUT", `project:q-${RUN}`, ADMIN, { maxQueuedJobs: 5 });

    // Assess
    expectError(malformed, 400, "validation_failed");
    expectError(queued, 400, "validation_failed");
    expect((await quota("GET", `project:q-${RUN}`, ADMIN)).json.limits.maxQueuedJobs).toBeNull();
  });

  it("holds a project's members to its maxPriority at submit (403); admins are not held to it", async () => {
    // Prepare
    const project = `prio-${RUN}`;
    const member = people.next();
    await quota("PUT", `project:${project}`, ADMIN, { maxPriority: "normal" });

    // Act
    const high = await post(member, "/jobs", { type: "echo", project, priority: "high" });
    const normal = await post<Job>(member, "/jobs", { type: "echo", project, priority: "normal" });
    const otherProject = await post<Job>(member, "/jobs", {
      type: "echo",
      project: `${project}-x`,
      priority: 5,
    });
    const byAdmin = await post<Job>(ADMIN, "/jobs", { type: "echo", project, priority: "high" });

    // Assess
    const refused = expectError(high, 403, "forbidden");
    expect(refused.error.message).toContain(`project ${project}`);
    expect(normal.status).toBe(201);
    expect(otherProject.status).toBe(201);
    expect(byAdmin.status).toBe(201);
    const raised = await api.request("PATCH", `/jobs/${normal.json.id}`, {
      token: member.token,
      body: { priority: "high" },
    });
    const lowered = await api.request<Job>("PATCH", `/jobs/${normal.json.id}`, {
      token: member.token,
      body: { priority: "low" },
    });
    expectError(raised, 403, "forbidden");
    expect(lowered.status).toBe(200);
  });
});

describe("POST /admin/tokens with a project", () => {
  it("binds a table token: its view shows the project and its jobs get it; another project is a 403", async () => {
    // Prepare
    const who = `tabled-${RUN}`;

    // Act
    const created = await post<{ token: string; project: string | null; principal: string }>(
      ADMIN,
      "/admin/tokens",
      { principal: who, project: ML },
    );
    const token: Actor = { principal: who, token: created.json.token };
    const job = await post<Job>(token, "/jobs", { type: "echo" });
    const refused = await post(token, "/jobs", { type: "echo", project: VISION });
    const readsQuota = await quota("GET", `project:${ML}`, token);
    const malformed = await post(ADMIN, "/admin/tokens", { principal: who, project: "Not Valid" });

    // Assess
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ principal: who, project: ML });
    expect(job.status).toBe(201);
    expect(job.json.project).toBe(ML);
    expectError(refused, 403, "forbidden");
    expect(readsQuota.status).toBe(200);
    expectError(malformed, 400, "validation_failed");
  });
});

describe("schedules of a project-bound token", () => {
  it("store the token's project in the template, and refuse another project with 403", async () => {
    // Act
    const created = await post<{ id: string; job: Record<string, unknown> }>(MEMBER, "/schedules", {
      name: "nightly",
      cron: "0 2 * * *",
      job: { type: "echo" },
    });
    const refused = await post(MEMBER, "/schedules", {
      name: "elsewhere",
      cron: "0 2 * * *",
      job: { type: "echo", project: VISION },
    });
    const fired = await post<Job>(MEMBER, `/schedules/${created.json.id}/trigger`, {});

    // Assess
    expect(created.status).toBe(201);
    expect(created.json.job.project).toBe(ML);
    expectError(refused, 403, "forbidden");
    expect(fired.status).toBe(201);
    expect(fired.json.project).toBe(ML);
  });
});
