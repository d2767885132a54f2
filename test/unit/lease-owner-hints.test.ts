import { describe, expect, it } from "vitest";
import { leaseOwnerHints } from "../../app/queue-reader";

/**
 * The owners a scheduling pass leaves on the pool's lease item for the next pass
 * (app/queue-reader.ts): a hint kept small enough that the lease's writes stay one write unit.
 */
describe("leaseOwnerHints", () => {
  it("keeps the owners found, in order, and writes nothing when the lease has them already", () => {
    expect(leaseOwnerHints(["alice", "bob"], undefined)).toEqual(["alice", "bob"]);
    expect(leaseOwnerHints(["alice", "bob"], ["alice"])).toEqual(["alice", "bob"]);
    expect(leaseOwnerHints(["alice", "bob"], ["alice", "bob"])).toBeNull();
    expect(leaseOwnerHints([], [])).toBeNull();
    expect(leaseOwnerHints([], ["alice"])).toEqual([]);
  });

  it("keeps only the first owners that fit in about 600 bytes, so the lease item stays under 1 KB", () => {
    const owners = Array.from(
      { length: 40 },
      (_, i) => `team-${String(i).padStart(2, "0")}-${"x".repeat(20)}`,
    );
    const kept = leaseOwnerHints(owners, undefined) ?? [];
    expect(kept).toEqual(owners.slice(0, kept.length));
    expect(kept.length).toBeGreaterThan(10);
    expect(kept.length).toBeLessThan(owners.length);
    expect(kept.reduce((sum, o) => sum + Buffer.byteLength(o) + 3, 0)).toBeLessThanOrEqual(600);
  });
});
