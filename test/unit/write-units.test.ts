import { marshall } from "@aws-sdk/util-dynamodb";
import { describe, expect, it } from "vitest";
import { jobsTable, type TableDefinition } from "../../store/tables";
import { appliedUpdate, type Item, itemSize, writeUnits } from "../../store/write-units";

const item = (value: Record<string, unknown>): Item => marshall(value, { removeUndefinedValues: true });

/** A table with one index on `gpk`/`gsk` projecting `shown`. */
const table: TableDefinition = {
  id: "T",
  partitionKey: { name: "pk", type: "S" },
  sortKey: { name: "sk", type: "S" },
  globalSecondaryIndexes: [
    {
      indexName: "g",
      partitionKey: { name: "gpk", type: "S" },
      sortKey: { name: "gsk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: ["shown"] },
    },
  ],
};

describe("itemSize", () => {
  it("counts names and values as DynamoDB sizes them", () => {
    // "pk" 2 + "ab" 2; "n" 1 + 12345 (3 digit pairs + 1) 4; "b" 1 + true 1; "z" 1 + null 1.
    expect(itemSize(item({ pk: "ab", n: 12_345, b: true, z: null }))).toBe(4 + 5 + 2 + 2);
    // A map: 3 bytes, 1 per element, the elements' names and values.
    expect(itemSize(item({ m: { a: "xy" } }))).toBe(1 + 3 + 1 + (1 + 2));
    // A list: 3 bytes and 1 per element.
    expect(itemSize(item({ l: ["ab", "c"] }))).toBe(1 + 3 + (1 + 2) + (1 + 1));
    expect(itemSize(undefined)).toBe(0);
  });
});

describe("writeUnits", () => {
  const base = { pk: "p", sk: "s" };

  it("bills the larger image per started KB, twice in a transaction", () => {
    const small = item({ ...base, blob: "x".repeat(500) });
    const large = item({ ...base, blob: "x".repeat(1500) });
    expect(writeUnits(table, undefined, small, false)).toBe(1);
    expect(writeUnits(table, small, large, false)).toBe(2);
    expect(writeUnits(table, large, small, false)).toBe(2);
    expect(writeUnits(table, small, undefined, false)).toBe(1);
    expect(writeUnits(table, small, large, true)).toBe(4);
  });

  it("adds an index write when an entry appears, goes or changes, two when its key moves", () => {
    const out = item({ ...base });
    const inIndex = item({ ...base, gpk: "a", gsk: "1", shown: "x", hidden: "h" });
    expect(writeUnits(table, undefined, inIndex, false)).toBe(2);
    expect(writeUnits(table, inIndex, out, false)).toBe(2);
    // Key moved: a delete and a put in the index.
    expect(writeUnits(table, inIndex, item({ ...base, gpk: "b", gsk: "1", shown: "x" }), false)).toBe(3);
    // A projected attribute changed: the entry is rewritten.
    expect(
      writeUnits(table, inIndex, item({ ...base, gpk: "a", gsk: "1", shown: "y", hidden: "h" }), false),
    ).toBe(2);
    // Only an attribute the index does not carry changed: the index is not written.
    expect(
      writeUnits(table, inIndex, item({ ...base, gpk: "a", gsk: "1", shown: "x", hidden: "k" }), false),
    ).toBe(1);
    // In a transaction, the indexes' writes count twice as well.
    expect(writeUnits(table, undefined, inIndex, true)).toBe(4);
  });

  it("prices a job's status change by the indexes it moves", () => {
    const queued = item({
      pk: "JOB#j",
      sk: "JOB",
      status: "queued",
      ownerPk: "O#a",
      ownerSk: "j",
      ownerStatusPk: "O#a#queued",
      dayPk: "DAY#d",
      queuePk: "Q#cpu",
      queueSk: "10#~#j",
      queueOwnerSk: "a#10#~#j",
      queueAgeSk: "t#j",
      type: "echo",
    });
    const dispatched = item({
      pk: "JOB#j",
      sk: "JOB",
      status: "dispatched",
      ownerPk: "O#a",
      ownerSk: "j",
      ownerStatusPk: "O#a#dispatched",
      dayPk: "DAY#d",
      activePk: "ACT#cpu",
      activeSk: "n#j",
      type: "echo",
    });
    // The job 1, byOwnerStatus moved 2, three queue views left 3, active entered 1.
    expect(writeUnits(jobsTable, queued, dispatched, false)).toBe(7);
  });
});

describe("appliedUpdate", () => {
  const before = item({ pk: "p", sk: "s", status: "queued", queuePk: "Q#cpu", n: 1 });

  it("works out a plain SET … REMOVE … update from the item before it", () => {
    const after = appliedUpdate(before, {
      UpdateExpression: "SET #s0 = :s0, n = :n REMOVE #r0",
      ExpressionAttributeNames: { "#s0": "status", "#r0": "queuePk" },
      ExpressionAttributeValues: item({ ":s0": "dispatched", ":n": 2 }),
    });
    expect(after).toEqual(item({ pk: "p", sk: "s", status: "dispatched", n: 2 }));
  });

  it("leaves to a read what it cannot work out: sums, ADD, nested paths, unknown names", () => {
    const values = item({ ":one": 1 });
    for (const UpdateExpression of [
      "SET n = n + :one",
      "ADD n :one",
      "SET used.cpu = :one",
      "SET #x = :one",
    ]) {
      expect(appliedUpdate(before, { UpdateExpression, ExpressionAttributeValues: values })).toBeNull();
    }
  });
});
