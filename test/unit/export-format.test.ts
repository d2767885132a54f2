import { describe, expect, it } from "vitest";
import { importRank, parseExportLines } from "../../core/export";

/** The NDJSON lines of GET /admin/export and POST /admin/import (core/export.ts). */

const JOB_ID = "job_01ARZ3NDEKTSV4RRFFQ69G5FAV";
const job = {
  id: JOB_ID,
  type: "echo",
  status: "queued",
  statusReason: "waiting",
  owner: "alice",
  priority: 0,
  version: 1,
  attempts: 0,
  unmet: 0,
  createdAt: "2026-12-06T10:00:00.000Z",
  updatedAt: "2026-12-06T10:00:00.000Z",
  pool: null,
  resources: { cpu: 1, memoryMb: 128, gpu: 0 },
  payloadJson: '{"n":1}',
  tagsJson: "{}",
  constraintsJson: "{}",
};

const ndjson = (...lines: unknown[]) =>
  lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n");

describe("parseExportLines", () => {
  it("reads every kind and skips blank lines", () => {
    // Prepare
    const text = ndjson(
      { kind: "header", format: "jobq-export", version: 1, exportedAt: "2026-12-06T10:00:00.000Z" },
      { kind: "job", item: job },
      "",
      {
        kind: "transition",
        jobId: JOB_ID,
        version: 1,
        item: { from: null, to: "queued", at: job.createdAt, reason: "r" },
      },
      { kind: "dependency", jobId: JOB_ID, on: JOB_ID, item: { met: false } },
      { kind: "quota", item: { principal: "alice", maxQueuedJobs: 3 } },
      { kind: "cursor", nextCursor: null },
    );

    // Act
    const { lines, problems } = parseExportLines(text);

    // Assess
    expect(problems).toEqual([]);
    expect(lines.map((l) => l.kind)).toEqual([
      "header",
      "job",
      "transition",
      "dependency",
      "quota",
      "cursor",
    ]);
  });

  it("names every bad line by its number, counting blank ones", () => {
    const text = ndjson(
      { kind: "job", item: job },
      "",
      "{oops",
      { kind: "job", item: { ...job, id: "job_1" } },
      { kind: "header", format: "jobq-export", version: 2, exportedAt: "2026-12-06T10:00:00.000Z" },
      { kind: "token", item: {} },
      `{"kind":"result","jobId":"${JOB_ID}","item":{"value":1e400}}`,
      { kind: "attempt", jobId: JOB_ID, item: { attempt: 1, status: "running" }, extra: true },
      { kind: "job", item: { ...job, payloadJson: "{not json" } },
    );

    const { lines, problems } = parseExportLines(text);

    expect(lines).toHaveLength(1);
    expect(problems.map((p) => p.line)).toEqual([3, 4, 5, 6, 7, 8, 9]);
  });

  it("refuses a record nested deeper than DynamoDB stores", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { deep };
    const { problems } = parseExportLines(ndjson({ kind: "result", jobId: JOB_ID, item: { deep } }));
    expect(problems).toMatchObject([{ line: 1, message: expect.stringMatching(/deeper/) }]);
  });
});

describe("importRank", () => {
  it("puts jobs after the records that belong to them", () => {
    expect(importRank("job")).toBeGreaterThan(importRank("dependent"));
    expect(importRank("transition")).toBeGreaterThan(importRank("header"));
  });
});
