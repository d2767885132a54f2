import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nextChunk } from "../../app/stats";
import { emptyDelta, foldChanges, type JobChange, type JobImage, mergeDelta } from "../../core/stats";
import { MAX_ATTRIBUTES_PER_UPDATE, MAX_UPDATES_PER_WRITE, writeSize } from "../../store/stats";

/**
 * How the stats consumer cuts a shard's records into transactions. Receipts are keyed by a
 * chunk's first record, so exactly-once rests on these properties: chunks fit a transaction,
 * add up to the whole batch, and are cut the same by every delivery that starts at a chunk start.
 */

const BASE = Date.parse("2026-12-06T00:00:00.000Z");

/** A job of `type` completing `minute` minutes after BASE (a 1 s run). */
function completion(i: number, minute: number, type: string, owner: string): JobChange {
  const at = new Date(BASE + minute * 60_000).toISOString();
  const running: JobImage = {
    id: `job_${i}`,
    status: "running",
    owner,
    type,
    pool: "cpu",
    reservationPool: "cpu",
    createdAt: at,
    updatedAt: at,
    queuedAt: at,
    attemptStartedAt: at,
    staged: false,
  };
  return {
    old: running,
    new: {
      ...running,
      status: "completed",
      updatedAt: new Date(BASE + minute * 60_000 + 1000).toISOString(),
    },
  };
}

/** A write that moves no figure (a status reason): part of the shard, never written. */
const nothing: JobChange = { old: null, new: null };

const batches = fc
  .array(
    fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          minute: fc.integer({ min: 0, max: 400 }),
          type: fc.constantFrom("a", "b", "c"),
          owner: fc.constantFrom("x", "y"),
        }),
      },
      { weight: 1, arbitrary: fc.constant(null) },
    ),
    { maxLength: 400 },
  )
  .map((specs) => specs.map((s, i) => (s ? completion(i, s.minute, s.type, s.owner) : nothing)));

function chunksOf(records: readonly JobChange[], from = 0): { start: number; end: number }[] {
  const chunks: { start: number; end: number }[] = [];
  for (let start = from; start < records.length; ) {
    const { end } = nextChunk(records, start);
    chunks.push({ start, end });
    start = end;
  }
  return chunks;
}

describe("cutting a batch into transactions", () => {
  it("makes chunks that each fit one transaction and together fold to the whole batch", () => {
    fc.assert(
      fc.property(batches, (records) => {
        const total = emptyDelta();
        for (const { start, end } of chunksOf(records)) {
          const { delta } = nextChunk(records, start);
          const size = writeSize(delta);
          // A single record always fits; more only while the transaction holds them.
          if (end - start > 1) {
            expect(size.items).toBeLessThanOrEqual(MAX_UPDATES_PER_WRITE);
            expect(size.attributes).toBeLessThanOrEqual(MAX_ATTRIBUTES_PER_UPDATE);
          }
          mergeDelta(total, delta);
        }

        expect(total).toEqual(foldChanges(records));
      }),
      { numRuns: 60 },
    );
  });

  it("cuts the same chunks for a redelivery from any chunk start, longer or shorter", () => {
    fc.assert(
      fc.property(batches, batches, fc.nat(), (records, more, pick) => {
        const chunks = chunksOf(records);
        if (chunks.length === 0) return;
        const from = chunks[pick % chunks.length]?.start ?? 0;
        const longer = [...records, ...more];

        const again = chunksOf(longer, from);

        // Every chunk of the original from there is cut the same, except that the one ending
        // at the batch's end may now run on (its receipt then covers what it applied).
        const original = chunks.filter((c) => c.start >= from);
        for (const [i, chunk] of original.entries()) {
          if (chunk.end === records.length) expect(again[i]?.start).toBe(chunk.start);
          else expect(again[i]).toEqual(chunk);
        }
      }),
      { numRuns: 60 },
    );
  });

  it("writes nothing for records that move no figure", () => {
    const { end, delta } = nextChunk([nothing, nothing, nothing], 0);

    expect(end).toBe(3);
    expect(writeSize(delta).items).toBe(0);
  });

  it("splits a batch spread over more minutes than one transaction holds", () => {
    const records = Array.from({ length: 200 }, (_, i) => completion(i, i, "a", "x"));

    expect(chunksOf(records).length).toBeGreaterThanOrEqual(3);
  });
});
