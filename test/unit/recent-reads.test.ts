import { describe, expect, it } from "vitest";
import { RecentReads } from "../../store/recent-reads";

/** The submit path's remembered reads (store/recent-reads.ts), without DynamoDB. */

/** A read that counts its calls and answers `value`, or fails when `value` is an Error. */
function reader<V>(value: V | Error) {
  const calls = { n: 0 };
  const read = () => {
    calls.n++;
    return value instanceof Error ? Promise.reject(value) : Promise.resolve(value);
  };
  return { read, calls };
}

describe("RecentReads", () => {
  it("answers from the copy until it is maxAgeMs old, then reads again", async () => {
    const reads = new RecentReads<string, number>(10);
    const first = reader(1);
    const second = reader(2);

    const fresh = await reads.get("a", 1000, 0, first.read);
    const kept = await reads.get("a", 1000, 999, second.read);
    const stale = await reads.get("a", 1000, 1000, second.read);

    expect([fresh, kept, stale]).toEqual([1, 1, 2]);
    expect([first.calls.n, second.calls.n]).toEqual([1, 1]);
  });

  it("shares a read in flight and counts a copy from a later clock as stale", async () => {
    const reads = new RecentReads<string, number>(10);
    const first = reader(1);
    const second = reader(2);

    const [a, b] = await Promise.all([
      reads.get("a", 1000, 500, first.read),
      reads.get("a", 1000, 500, first.read),
    ]);
    const clockMovedBack = await reads.get("a", 1000, 100, second.read);

    expect([a, b, clockMovedBack]).toEqual([1, 1, 2]);
    expect(first.calls.n).toBe(1);
  });

  it("does not remember a failed read", async () => {
    const reads = new RecentReads<string, number>(10);
    const failing = reader<number>(new Error("throttled"));
    const next = reader(3);

    await expect(reads.get("a", 1000, 0, failing.read)).rejects.toThrow("throttled");
    const after = await reads.get("a", 1000, 1, next.read);

    expect(after).toBe(3);
    expect(next.calls.n).toBe(1);
  });

  it("keeps at most capacity keys, dropping the least recently read", async () => {
    const reads = new RecentReads<string, number>(2);
    await reads.get("a", 1000, 0, reader(1).read);
    await reads.get("b", 1000, 0, reader(2).read);
    await reads.get("a", 1000, 2000, reader(10).read);
    await reads.get("c", 1000, 2000, reader(3).read);
    const again = { a: reader(-1), b: reader(-2) };

    const a = await reads.get("a", 5000, 2001, again.a.read);
    const b = await reads.get("b", 5000, 2001, again.b.read);

    expect(a).toBe(10);
    expect(again.a.calls.n).toBe(0);
    expect(b).toBe(-2);
    expect(again.b.calls.n).toBe(1);
  });

  it("forgets one key, or every key", async () => {
    const reads = new RecentReads<string, number>(10);
    await reads.get("a", 1000, 0, reader(1).read);
    await reads.get("b", 1000, 0, reader(2).read);

    reads.forget("a");
    const a = await reads.get("a", 1000, 1, reader(10).read);
    const b = await reads.get("b", 1000, 1, reader(20).read);
    reads.clear();
    const bAfterClear = await reads.get("b", 1000, 2, reader(30).read);

    expect([a, b, bAfterClear]).toEqual([10, 2, 30]);
  });
});
