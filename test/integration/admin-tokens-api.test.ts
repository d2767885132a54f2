import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashToken, TOKEN_PATTERN } from "../../store/tokens";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  ALICE,
  expectError,
  type Job,
  type ListPage,
  problemPaths,
} from "../support/jobs";
import { suffix } from "../support/scheduling";
import { HandshakeRefused, openStream } from "../support/stream";

/**
 * POST/GET /admin/tokens and DELETE /admin/tokens/{id} through HTTP against the shared DynamoDB
 * Local: the secret is answered once and never listed, the token works at once and is refused at
 * its next request after a revoke (the local API asks the authorizer module on every request; in
 * AWS API Gateway's cache may honor it up to its TTL), and only admins may do any of it. The
 * Tokens table is shared with every file, so each test names its own principals.
 */

interface TokenView {
  id: string;
  principal: string;
  role: "user" | "admin";
  createdAt: string;
  revokedAt: string | null;
}
type CreatedToken = TokenView & { token: string };

let api: TestApi;

beforeAll(async () => {
  api = await startTestApi();
});
afterAll(() => api?.close());

const principal = (label: string): string => `tok-${label}-${suffix()}`;

async function create(body: unknown, actor: Actor = ADMIN) {
  return api.request<CreatedToken>("POST", "/admin/tokens", { token: actor.token, body });
}

async function created(body: Record<string, unknown>): Promise<CreatedToken> {
  const response = await create(body);
  expect(response.status, JSON.stringify(response.json)).toBe(201);
  return response.json;
}

/** Every token GET /admin/tokens lists, page by page, with the raw text of each page. */
async function listAll(limit = 200): Promise<{ items: TokenView[]; texts: string[] }> {
  const items: TokenView[] = [];
  const texts: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 1000; pages++) {
    const query: string = `?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const response = await api.request<ListPage<TokenView>>("GET", `/admin/tokens${query}`, {
      token: ADMIN.token,
    });
    expect(response.status).toBe(200);
    items.push(...response.json.items);
    texts.push(JSON.stringify(response.json));
    cursor = response.json.nextCursor;
    if (cursor === null) return { items, texts };
  }
  throw new Error("GET /admin/tokens never ended");
}

describe("POST /admin/tokens", () => {
  it("answers 201 with the secret and its metadata, and the secret works at once as its principal", async () => {
    // Prepare
    const who = principal("works");

    // Act
    const response = await create({ principal: who });
    const token = response.json.token;
    const submitted = await api.request<Job>("POST", "/jobs", { token, body: { type: "echo" } });

    // Assess
    expect(response.status).toBe(201);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.json).toEqual({
      id: hashToken(token).slice(0, 12),
      principal: who,
      role: "user",
      createdAt: expect.any(String),
      revokedAt: null,
      project: null,
      token: expect.stringMatching(TOKEN_PATTERN),
    });
    expect(submitted.status).toBe(201);
    expect(submitted.json.owner).toBe(who);
  });

  it("makes an admin token that may itself create tokens and see others' jobs", async () => {
    // Prepare
    const admin = await created({ principal: principal("admin"), admin: true });
    const alicesJob = await api.request<Job>("POST", "/jobs", { token: ALICE.token, body: { type: "echo" } });

    // Act
    const made = await create(
      { principal: principal("made-by-admin") },
      { principal: "x", token: admin.token },
    );
    const seen = await api.request<Job>("GET", `/jobs/${alicesJob.json.id}`, { token: admin.token });

    // Assess
    expect(admin.role).toBe("admin");
    expect(made.status).toBe(201);
    expect(seen.status).toBe(200);
  });

  it("refuses a bad body with 400 listing every problem, never a 500", async () => {
    // Act
    const missing = await create({});
    const bad = await create({ principal: "no spaces allowed", admin: "yes", extra: 1 });
    const notJson = await create("{");

    // Assess
    expect(problemPaths(expectError(missing, 400, "validation_failed"))).toEqual(["principal"]);
    expect(problemPaths(expectError(bad, 400, "validation_failed")).sort()).toEqual(
      expect.arrayContaining(["principal", "admin"]),
    );
    expectError(notJson, 400, "validation_failed");
  });
});

describe("GET /admin/tokens", () => {
  it("lists every token with its id and role, never the secret nor its hash", async () => {
    // Prepare
    const token = await created({ principal: principal("listed"), admin: true });

    // Act
    const { items, texts } = await listAll();

    // Assess
    const listed = items.find((t) => t.id === token.id);
    expect(listed).toEqual({
      id: token.id,
      principal: token.principal,
      role: "admin",
      createdAt: token.createdAt,
      revokedAt: null,
      project: null,
    });
    for (const text of texts) {
      expect(text).not.toContain(token.token);
      expect(text).not.toContain(hashToken(token.token));
    }
  });

  it("pages oldest first by cursor, each token once", async () => {
    // Prepare
    const first = await created({ principal: principal("page") });
    const second = await created({ principal: principal("page") });

    // Act
    const paged = await listAll(1);

    // Assess: other files may add tokens meanwhile, so only what this test made is counted.
    const ids = paged.items.map((t) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.filter((id) => id === first.id || id === second.id).sort()).toEqual(
      [first.id, second.id].sort(),
    );
    const times = paged.items.map((t) => t.createdAt);
    expect([...times].sort()).toEqual(times);
  });

  it("refuses a cursor it did not write with 400", async () => {
    const response = await api.request("GET", "/admin/tokens?cursor=bm90LWEtY3Vyc29y", {
      token: ADMIN.token,
    });
    expect(problemPaths(expectError(response, 400, "validation_failed"))).toEqual(["cursor"]);
  });
});

describe("DELETE /admin/tokens/{id}", () => {
  it("refuses the token at its next request, and says so again (same revokedAt) when repeated", async () => {
    // Prepare
    const token = await created({ principal: principal("revoked") });
    const before = await api.request("GET", "/jobs?limit=1", { token: token.token });

    // Act
    const revoked = await api.request<TokenView>("DELETE", `/admin/tokens/${token.id}`, {
      token: ADMIN.token,
    });
    const after = await api.request("GET", "/jobs?limit=1", { token: token.token });
    const again = await api.request<TokenView>("DELETE", `/admin/tokens/${token.id}`, { token: ADMIN.token });

    // Assess
    expect(before.status).toBe(200);
    expect(revoked.status).toBe(200);
    expect(revoked.json).toMatchObject({
      id: token.id,
      principal: token.principal,
      revokedAt: expect.any(String),
    });
    expect(revoked.json).not.toHaveProperty("token");
    expectError(after, 401, "unauthorized");
    expect(again.status).toBe(200);
    expect(again.json.revokedAt).toBe(revoked.json.revokedAt);
    const listed = (await listAll()).items.find((t) => t.id === token.id);
    expect(listed?.revokedAt).toBe(revoked.json.revokedAt);
  });

  it("opens the job stream with a token the API made, and refuses it once revoked", async () => {
    // Prepare
    const token = await created({ principal: principal("stream") });

    // Act
    const open = await openStream(api.streamUrl, token.token, "query");
    open.send({ action: "ping" });
    const pong = await open.waitFor((m) => m.type === "pong");
    open.close();
    await api.request("DELETE", `/admin/tokens/${token.id}`, { token: ADMIN.token });
    const refused = await openStream(api.streamUrl, token.token).then(
      () => undefined,
      (error: unknown) => error,
    );

    // Assess
    expect(pong).toEqual({ type: "pong" });
    expect(refused).toBeInstanceOf(HandshakeRefused);
    expect((refused as HandshakeRefused).status).toBe(401);
  });

  it("answers 404 for an id no token has, and for anything that is not a token id", async () => {
    for (const id of ["000000000000", "not-a-token-id", "ABCDEF123456"]) {
      const response = await api.request("DELETE", `/admin/tokens/${id}`, { token: ADMIN.token });
      expectError(response, 404, "not_found");
    }
  });
});

describe("admin only", () => {
  it("answers 403 in the error format to a user, for every route, whatever the body", async () => {
    // Prepare
    const target = await created({ principal: principal("target") });
    const tableUser = await created({ principal: principal("table-user") });

    for (const token of [ALICE.token, tableUser.token]) {
      // Act
      const post = await api.request("POST", "/admin/tokens", {
        token,
        body: { principal: "mallory", admin: true },
      });
      const postBad = await api.request("POST", "/admin/tokens", { token, body: "{" });
      const list = await api.request("GET", "/admin/tokens", { token });
      const listBad = await api.request("GET", "/admin/tokens?limit=0&cursor=x", { token });
      const revoke = await api.request("DELETE", `/admin/tokens/${target.id}`, { token });

      // Assess
      expectError(post, 403, "forbidden");
      expectError(postBad, 403, "forbidden");
      expectError(list, 403, "forbidden");
      expectError(listBad, 403, "forbidden");
      expectError(revoke, 403, "forbidden");
    }
    const still = (await listAll()).items.find((t) => t.id === target.id);
    expect(still?.revokedAt).toBeNull();
    expect((await listAll()).items.some((t) => t.principal === "mallory")).toBe(false);
  });

  it("answers 401 without a token", async () => {
    expectError(await api.request("GET", "/admin/tokens"), 401, "unauthorized");
  });
});
