import { describe, expect, it } from "vitest";
import {
  arrayChildId,
  arrayChildIds,
  arraySchema,
  arraySummary,
  countArrayChildren,
  MAX_ARRAY_SIZE,
  parseArrayChildId,
} from "../../core/arrays";
import { JOB_STATUSES, submitJobSchema } from "../../core/job";
import { jobTemplateSchema } from "../../core/schedule";
import { canTransition } from "../../core/status";

const PARENT = "job_01JABCDEFGHJKMNPQRSTVWXYZ0";

describe("array job ids", () => {
  it("derives each child's id from its parent and index, and parses it back", () => {
    // Act
    const ids = arrayChildIds(PARENT, 3);

    // Assess
    expect(ids).toEqual([`${PARENT}-0`, `${PARENT}-1`, `${PARENT}-2`]);
    expect(parseArrayChildId(arrayChildId(PARENT, 9_999))).toEqual({ parentId: PARENT, index: 9_999 });
  });

  it("takes a slice of the children for a page", () => {
    expect(arrayChildIds(PARENT, 10, 8, 50)).toEqual([`${PARENT}-8`, `${PARENT}-9`]);
  });

  it.each([PARENT, `${PARENT}-01`, `${PARENT}-10000`, `${PARENT}-x`, `${PARENT}-`, "job_1-2"])(
    "does not read %s as a child id",
    (id) => {
      expect(parseArrayChildId(id)).toBeNull();
    },
  );
});

describe("array size", () => {
  it.each([1, 10, MAX_ARRAY_SIZE])("accepts size %i", (size) => {
    expect(submitJobSchema.safeParse({ type: "echo", array: { size } }).success).toBe(true);
  });

  it.each([0, MAX_ARRAY_SIZE + 1, 1.5, -1])("refuses size %s", (size) => {
    expect(arraySchema.safeParse({ size }).success).toBe(false);
    expect(submitJobSchema.safeParse({ type: "echo", array: { size } }).success).toBe(false);
  });

  it("refuses unknown fields and arrays in a schedule's template", () => {
    expect(arraySchema.safeParse({ size: 2, step: 1 }).success).toBe(false);
    expect(jobTemplateSchema.safeParse({ type: "echo", array: { size: 2 } }).success).toBe(false);
  });
});

describe("array summary", () => {
  it("counts every status, zero where no child is in it", () => {
    // Act
    const counts = countArrayChildren(["completed", "completed", "running", "failed"]);

    // Assess
    expect(Object.keys(counts).sort()).toEqual([...JOB_STATUSES].sort());
    expect(counts).toMatchObject({ completed: 2, running: 1, failed: 1, queued: 0 });
  });

  it("says how many children have not completed from the parent's own count", () => {
    expect(arraySummary(5, 2)).toEqual({ size: 5, pending: 2, counts: null });
    expect(arraySummary(5, 0, ["completed", "completed", "completed", "completed", "completed"])).toEqual({
      size: 5,
      pending: 0,
      counts: expect.objectContaining({ completed: 5 }),
    });
  });

  it("keeps pending within 0..size whatever the stored count", () => {
    expect(arraySummary(3, -1).pending).toBe(0);
    expect(arraySummary(3, 7).pending).toBe(3);
  });

  it("lets only a blocked job complete without running (an array's parent)", () => {
    expect(canTransition("blocked", "completed")).toBe(true);
    expect(canTransition("queued", "completed")).toBe(false);
    expect(canTransition("scheduled", "completed")).toBe(false);
  });
});
