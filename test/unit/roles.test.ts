import type { APIGatewayProxyEvent } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { ForbiddenError } from "../../core/errors";
import { principalOfRole } from "../../core/principal";
import { refuseReadOnlyWrites } from "../../functions/http";
import { parseApiTokens } from "../../local/config";

/**
 * The token roles (core/principal.ts): what each lets a principal see and whether it may change
 * anything, the one check at the HTTP edge, and the local JOBQ_API_TOKENS spelling of them.
 */

function event(method: string, role: string): APIGatewayProxyEvent {
  return {
    httpMethod: method,
    path: "/jobs",
    requestContext: { authorizer: { principal: "alice", role } },
  } as unknown as APIGatewayProxyEvent;
}

describe("principalOfRole", () => {
  it.each([
    ["user", { id: "alice", admin: false }],
    ["admin", { id: "alice", admin: true }],
    ["reader", { id: "alice", admin: false, readOnly: true }],
    ["auditor", { id: "alice", admin: true, readOnly: true }],
    ["root", { id: "alice", admin: false }],
    [undefined, { id: "alice", admin: false }],
  ])("makes role %s the principal %j", (role, principal) => {
    expect(principalOfRole("alice", role)).toEqual(principal);
  });
});

describe("refuseReadOnlyWrites", () => {
  it.each(["POST", "PUT", "PATCH", "DELETE", "post"])("refuses %s from a reader and an auditor", (method) => {
    expect(() => refuseReadOnlyWrites(event(method, "reader"))).toThrow(ForbiddenError);
    expect(() => refuseReadOnlyWrites(event(method, "auditor"))).toThrow(/read-only/);
  });

  it("lets reads through for every role, and writes for users and admins", () => {
    for (const role of ["user", "admin", "reader", "auditor"]) {
      expect(() => refuseReadOnlyWrites(event("GET", role))).not.toThrow();
    }
    for (const role of ["user", "admin"]) {
      expect(() => refuseReadOnlyWrites(event("POST", role))).not.toThrow();
    }
  });
});

describe("JOBQ_API_TOKENS roles", () => {
  it("reads :reader, :auditor and :admin:reader", () => {
    const tokens = parseApiTokens("t1=alice:reader,t2=ops:auditor,t3=ops:admin:reader,t4=bob,t5=root:admin");

    expect([...tokens.values()].map((t) => t.role)).toEqual([
      "reader",
      "auditor",
      "auditor",
      "user",
      "admin",
    ]);
  });

  it.each(["t1=alice:", "t1=alice:reader:admin", "t1=alice:reader:reader"])("refuses %s", (spec) => {
    expect(() => parseApiTokens(spec)).toThrow(/only ":admin", ":reader"/);
  });
});
