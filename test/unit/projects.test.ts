import { describe, expect, it } from "vitest";
import type { QueuedJob } from "../../core/admission";
import { ForbiddenError, ProjectForbiddenError } from "../../core/errors";
import { type GpuQuotaState, gpuQuotaGate } from "../../core/gates";
import { projectNameSchema, submitJobSchema } from "../../core/job";
import { principalOfRole } from "../../core/principal";
import {
  assertProjectPriorityAllowed,
  jobProject,
  mayReadProjectQuota,
  projectGpuQuotaRefusal,
  projectOfQuotaKey,
  projectQuotaKey,
} from "../../core/projects";
import { NO_QUOTA } from "../../core/quota";
import { createTokenSchema } from "../../core/tokens";
import { HTTP_STATUS } from "../../functions/http";
import { LocalConfigError, parseApiTokens } from "../../local/config";
import { toJobItem } from "../../store/job-items";
import { gpuUsageItems } from "../../store/usage";
import { seededJob } from "../support/jobs";

/**
 * Projects (issue 13): the project a job gets from its token, the local token spelling, the
 * project quota's refusal and the GPU quota gate with owners and projects both.
 */

const NOW = "2026-11-25T11:59:00Z";

function gpuJob(id: string, extra: Partial<QueuedJob> = {}): QueuedJob {
  return {
    id,
    priority: 0,
    resources: { cpu: 1, memoryMb: 512, gpu: 1 },
    pool: null,
    constraints: {},
    queuedAt: NOW,
    owner: "alice",
    type: "train",
    ...extra,
  };
}

function spent(daily: number, used: number): GpuQuotaState {
  return {
    limits: { ...NO_QUOTA, dailyGpuSeconds: daily },
    used: { todayGpuSeconds: used, weekGpuSeconds: used },
  };
}

describe("project names", () => {
  it("accepts lowercase slugs up to 64 characters and refuses dots, capitals and longer names", () => {
    expect(projectNameSchema.safeParse("ml-research").success).toBe(true);
    expect(projectNameSchema.safeParse("team_7").success).toBe(true);
    expect(projectNameSchema.safeParse("a".repeat(64)).success).toBe(true);
    expect(projectNameSchema.safeParse("a".repeat(65)).success).toBe(false);
    expect(projectNameSchema.safeParse("ML").success).toBe(false);
    expect(projectNameSchema.safeParse("example.com").success).toBe(false);
    expect(projectNameSchema.safeParse("-x").success).toBe(false);
  });

  it("is an optional submit field", () => {
    expect(submitJobSchema.parse({ type: "echo", project: "vision" }).project).toBe("vision");
    expect(submitJobSchema.parse({ type: "echo" }).project).toBeUndefined();
    expect(submitJobSchema.safeParse({ type: "echo", project: "Vision" }).success).toBe(false);
  });

  it("keys a project's quota apart from every principal's", () => {
    expect(projectQuotaKey("ml")).toBe("project:ml");
    expect(projectOfQuotaKey("project:ml")).toBe("ml");
    expect(projectOfQuotaKey("alice")).toBeNull();
  });
});

describe("jobProject", () => {
  it("gives a bound token's jobs its project, named or not", () => {
    const bound = principalOfRole("alice", "user", "ml");

    expect(jobProject(bound, undefined)).toBe("ml");
    expect(jobProject(bound, "ml")).toBe("ml");
  });

  it("refuses a bound token naming another project with a 403 forbidden", () => {
    const bound = principalOfRole("alice", "admin", "ml");

    const refusal = (() => {
      try {
        jobProject(bound, "vision");
      } catch (error) {
        return error;
      }
      return undefined;
    })();

    expect(refusal).toBeInstanceOf(ProjectForbiddenError);
    expect(HTTP_STATUS[(refusal as ProjectForbiddenError).code]).toBe(403);
    expect((refusal as ProjectForbiddenError).details).toEqual({ project: "vision", boundTo: "ml" });
  });

  it("lets an unbound principal tag any project, or none", () => {
    const unbound = principalOfRole("bob", "user");

    expect(jobProject(unbound, "vision")).toBe("vision");
    expect(jobProject(unbound, undefined)).toBeNull();
  });
});

describe("who may read a project's quota", () => {
  it("admins and tokens bound to the project; not other users, nor tokens bound elsewhere", () => {
    expect(mayReadProjectQuota(principalOfRole("ops", "admin"), "ml")).toBe(true);
    expect(mayReadProjectQuota(principalOfRole("alice", "reader", "ml"), "ml")).toBe(true);
    expect(mayReadProjectQuota(principalOfRole("alice", "user", "vision"), "ml")).toBe(false);
    expect(mayReadProjectQuota(principalOfRole("bob", "user"), "ml")).toBe(false);
  });
});

describe("project quota refusals", () => {
  it("names the project and the window that is spent, daily first", () => {
    expect(
      projectGpuQuotaRefusal(
        "ml-research",
        { ...NO_QUOTA, dailyGpuSeconds: 3600, weeklyGpuSeconds: 3600 },
        { todayGpuSeconds: 3600.4, weekGpuSeconds: 3600.4 },
      ),
    ).toEqual({
      code: "quota",
      message: "project ml-research is over its daily GPU quota: 3600 of 3600 GPU-seconds used today",
    });
    expect(
      projectGpuQuotaRefusal(
        "ml",
        { ...NO_QUOTA, weeklyGpuSeconds: 100 },
        { todayGpuSeconds: 10, weekGpuSeconds: 150 },
      ),
    ).toEqual({
      code: "quota",
      message: "project ml is over its weekly GPU quota: 150 of 100 GPU-seconds used this week",
    });
    expect(
      projectGpuQuotaRefusal(
        "ml",
        { ...NO_QUOTA, dailyGpuSeconds: 100 },
        { todayGpuSeconds: 99, weekGpuSeconds: 99 },
      ),
    ).toBeNull();
  });

  it("refuses a priority above the project's maxPriority with a 403", () => {
    expect(() => assertProjectPriorityAllowed({ maxPriority: 0 }, "ml", 5)).toThrow(ForbiddenError);
    expect(() => assertProjectPriorityAllowed({ maxPriority: 0 }, "ml", 5)).toThrow(/project ml/);
    expect(() => assertProjectPriorityAllowed({ maxPriority: 0 }, "ml", 0)).not.toThrow();
    expect(() => assertProjectPriorityAllowed({ maxPriority: null }, "ml", 10)).not.toThrow();
  });
});

describe("gpuQuotaGate with project quotas", () => {
  it("holds only the spent project's GPU jobs, saying it is the project's quota", () => {
    const gate = gpuQuotaGate(new Map([[projectQuotaKey("ml"), spent(3600, 3600)]]));

    const held = gate.check(gpuJob("a", { project: "ml" }), new Date(NOW));

    expect(held?.code).toBe("quota");
    expect(held?.message).toMatch(/^project ml is over its daily GPU quota/);
    expect(gate.check(gpuJob("b", { project: "vision" }), new Date(NOW))).toBeNull();
    expect(gate.check(gpuJob("c"), new Date(NOW))).toBeNull();
    expect(
      gate.check(gpuJob("d", { project: "ml", resources: { cpu: 1, memoryMb: 512, gpu: 0 } }), new Date(NOW)),
    ).toBeNull();
  });

  it("names the owner's quota when the owner's is spent too, and the project's when only it is", () => {
    const gate = gpuQuotaGate(
      new Map([
        ["alice", spent(10, 10)],
        [projectQuotaKey("ml"), spent(3600, 3600)],
      ]),
    );

    expect(gate.check(gpuJob("a", { project: "ml" }), new Date(NOW))?.message).toMatch(/^quota exceeded/);
    expect(gate.check(gpuJob("b", { owner: "bob", project: "ml" }), new Date(NOW))?.message).toMatch(
      /^project ml/,
    );
  });
});

describe("tokens bound to a project", () => {
  it("JOBQ_API_TOKENS reads @project after the principal or its role", () => {
    const tokens = parseApiTokens("t1=alice@ml,t2=ops:admin@ml,t3=carol:reader@vision,t4=bob");

    expect(tokens.get("t1")).toEqual({ principal: "alice", role: "user", project: "ml" });
    expect(tokens.get("t2")).toEqual({ principal: "ops", role: "admin", project: "ml" });
    expect(tokens.get("t3")).toEqual({ principal: "carol", role: "reader", project: "vision" });
    expect(tokens.get("t4")).toStrictEqual({ principal: "bob", role: "user" });
  });

  it("keeps e-mail-like principals whole, and :user keeps any principal with @ unbound", () => {
    const tokens = parseApiTokens("t1=alice@example.com,t2=bob@corp:user,t3=eve@example.com:admin@ml");

    expect(tokens.get("t1")).toStrictEqual({ principal: "alice@example.com", role: "user" });
    expect(tokens.get("t2")).toStrictEqual({ principal: "bob@corp", role: "user" });
    expect(tokens.get("t3")).toEqual({ principal: "eve@example.com", role: "admin", project: "ml" });
  });

  it("refuses a project suffix that is not a project name, without echoing the token", () => {
    expect(() => parseApiTokens("secret=alice:admin@ML")).toThrow(LocalConfigError);
    expect(() => parseApiTokens("secret=alice:admin@ML")).not.toThrow(/secret/);
  });

  it("POST /admin/tokens takes an optional project, validated as a project name", () => {
    expect(createTokenSchema.parse({ principal: "alice", project: "ml" })).toEqual({
      principal: "alice",
      role: "user",
      project: "ml",
    });
    expect(createTokenSchema.parse({ principal: "alice" })).toStrictEqual({
      principal: "alice",
      role: "user",
    });
    expect(createTokenSchema.safeParse({ principal: "alice", project: "Not A Slug" }).success).toBe(false);
  });

  it("the HTTP edge's principal carries the binding only when there is one", () => {
    expect(principalOfRole("alice", "user", "ml")).toEqual({ id: "alice", admin: false, project: "ml" });
    expect(principalOfRole("alice", "user", "")).toStrictEqual({ id: "alice", admin: false });
    expect(principalOfRole("alice", "user", undefined)).toStrictEqual({ id: "alice", admin: false });
  });
});

describe("what a project costs, and what it does not", () => {
  it("a job without a project stores no project attribute nor index key; one with a project stores both", () => {
    const base = {
      id: "job_01JZ0000000000000000000000",
      type: "echo",
      status: "queued" as const,
      owner: "alice",
      createdAt: NOW,
    };

    const plain = toJobItem(seededJob(base), 0, false) as unknown as Record<string, unknown>;
    const tagged = toJobItem(seededJob({ ...base, project: "ml" }), 0, false) as unknown as Record<
      string,
      unknown
    >;

    expect("project" in plain).toBe(false);
    expect("projectPk" in plain).toBe(false);
    expect(tagged.project).toBe("ml");
    expect(tagged.projectPk).toBe("PRJ#ml");
  });

  it("an attempt's GPU usage adds the project's day and week items only when the job has a project", () => {
    const args = ["Policy", "alice", 1, "2026-11-25T08:00:00.000Z", "2026-11-25T09:00:00.000Z"] as const;

    const plain = gpuUsageItems(...args);
    const withNull = gpuUsageItems(...args, null);
    const tagged = gpuUsageItems(...args, "ml");
    const keysOf = (items: typeof plain) => items.map((i) => String(i.Update?.Key?.pk));

    expect(keysOf(plain)).toEqual(["PRINCIPAL#alice", "PRINCIPAL#alice"]);
    expect(withNull).toEqual(plain);
    expect(keysOf(tagged).sort()).toEqual(
      ["PRINCIPAL#alice", "PRINCIPAL#alice", "PRINCIPAL#project:ml", "PRINCIPAL#project:ml"].sort(),
    );
    expect(gpuUsageItems("Policy", "alice", 0, args[3], args[4], "ml")).toEqual([]);
  });
});
