import { describe, expect, it } from "vitest";
import { EXIT, run } from "../../cli/program";
import { createTokenSchema } from "../../core/tokens";

/**
 * The pure parts of the admin token work: POST /admin/tokens's request schema, and the CLI's own
 * refusals (usage errors, exit 2) that happen before anything is sent anywhere.
 */

function sink(): { write(text: string): void; text: () => string; readonly isTTY: boolean } {
  let text = "";
  return {
    isTTY: false,
    write(chunk: string) {
      text += chunk;
    },
    text: () => text,
  };
}

describe("createTokenSchema", () => {
  it("takes a principal and a role (user by default), or the older admin flag for the admin role", () => {
    // Act
    const user = createTokenSchema.parse({ principal: "alice" });
    const admin = createTokenSchema.parse({ principal: "ops@example.com", admin: true });
    const notAdmin = createTokenSchema.parse({ principal: "alice", admin: false });
    const reader = createTokenSchema.parse({ principal: "alice", role: "reader" });
    const auditor = createTokenSchema.parse({ principal: "ops", role: "auditor", admin: false });
    const both = createTokenSchema.parse({ principal: "ops", role: "admin", admin: true });

    // Assess
    expect(user).toEqual({ principal: "alice", role: "user" });
    expect(admin).toEqual({ principal: "ops@example.com", role: "admin" });
    expect(notAdmin).toEqual({ principal: "alice", role: "user" });
    expect(reader).toEqual({ principal: "alice", role: "reader" });
    expect(auditor).toEqual({ principal: "ops", role: "auditor" });
    expect(both).toEqual({ principal: "ops", role: "admin" });
  });

  it.each<[Record<string, unknown>, string]>([
    [{}, "a missing principal"],
    [{ principal: "" }, "an empty principal"],
    [{ principal: "has space" }, "a principal with a space"],
    [{ principal: "-leading" }, "a principal not starting with a letter or digit"],
    [{ principal: "a".repeat(129) }, "a principal of 129 characters"],
    [{ principal: "alice", admin: "yes" }, "a non-boolean admin"],
    [{ principal: "alice", owner: "bob" }, "an unknown field"],
    [{ principal: "alice", role: "root" }, "an unknown role"],
    [{ principal: "alice", role: "reader", admin: true }, "a role that contradicts admin"],
    [{ principal: "alice", role: "admin", admin: false }, "admin: false with role admin"],
  ])("refuses %j (%s)", (body, _why) => {
    expect(createTokenSchema.safeParse(body).success).toBe(false);
  });
});

describe("jobq tokens and dependents: usage errors", () => {
  it("exits 2 without --principal, a tokens table, or an id", async () => {
    // Prepare
    const err = sink();

    // Act
    const noPrincipal = await run(["tokens", "create"], { out: sink(), err: sink(), env: {} });
    const noTable = await run(["tokens", "bootstrap", "--principal", "ops"], { out: sink(), err, env: {} });
    const noId = await run(["tokens", "revoke"], { out: sink(), err: sink(), env: {} });
    const noJob = await run(["dependents"], { out: sink(), err: sink(), env: {} });
    const badLimit = await run(["dependents", "job_x", "--limit", "many"], {
      out: sink(),
      err: sink(),
      env: {},
    });

    // Assess
    expect([noPrincipal, noTable, noId, noJob, badLimit]).toEqual([
      EXIT.usage,
      EXIT.usage,
      EXIT.usage,
      EXIT.usage,
      EXIT.usage,
    ]);
    expect(err.text()).toMatch(/no tokens table: pass --table or set JOBQ_TOKENS_TABLE/);
  });

  it("lists the token commands and dependents in the help", async () => {
    // Prepare
    const out = sink();

    // Act
    const code = await run(["tokens", "--help"], { out, err: sink(), env: {} });
    const top = sink();
    await run(["--help"], { out: top, err: sink(), env: {} });

    // Assess
    expect(code).toBe(EXIT.ok);
    for (const command of ["create", "list", "revoke", "bootstrap"]) expect(out.text()).toContain(command);
    expect(top.text()).toContain("dependents");
  });
});
