import { describe, expect, it } from "vitest";
import {
  DEFAULT_RETENTION,
  HISTORY_MARGIN_DAYS,
  historyExpiresAt,
  jobExpiresAt,
  type Retention,
} from "../../core/retention";
import { readConfig } from "../../functions/config";
import { handlerEnvironment, LocalConfigError, readLocalConfig } from "../../local/config";
import { TABLES } from "../../store/tables";

const DAY = 86_400;
const END = "2026-12-06T10:00:00.500Z";
const END_EPOCH = Math.floor(Date.parse(END) / 1000);

describe("core/retention", () => {
  const retention: Retention = { historyDays: 90, jobDays: 30 };

  it("expires what the end writes retentionDays after it, in whole epoch seconds", () => {
    expect(historyExpiresAt(retention, END, true)).toBe(END_EPOCH + 90 * DAY);
  });

  it("gives what a live job writes the margin on top, so it outlives an end within the margin", () => {
    const written = "2026-11-10T10:00:00.000Z";
    const expiry = historyExpiresAt(retention, written, false);

    expect(expiry).toBe(Math.floor(Date.parse(written) / 1000) + (90 + HISTORY_MARGIN_DAYS) * DAY);
    // Ended 26 days after the write, within the margin: kept at least retentionDays after the end.
    expect(expiry).toBeGreaterThanOrEqual(historyExpiresAt(retention, END, true));
  });

  it("expires the job item only when jobRetentionDays is set", () => {
    expect(jobExpiresAt(retention, END)).toBe(END_EPOCH + 30 * DAY);
    expect(jobExpiresAt(DEFAULT_RETENTION, END)).toBeNull();
    expect(DEFAULT_RETENTION).toEqual({ historyDays: 90, jobDays: null });
  });
});

describe("the retention settings' variables", () => {
  it("default to 90 days of history and jobs kept for good", () => {
    expect(readConfig({}).retention).toEqual({ historyDays: 90, jobDays: null });
  });

  it("read JOBQ_RETENTION_DAYS and JOBQ_JOB_RETENTION_DAYS as whole days", () => {
    expect(readConfig({ JOBQ_RETENTION_DAYS: "30", JOBQ_JOB_RETENTION_DAYS: "365" }).retention).toEqual({
      historyDays: 30,
      jobDays: 365,
    });
  });

  it.each(["0", "-1", "1.5", "ninety"])("refuse %s at cold start", (days) => {
    expect(() => readConfig({ JOBQ_RETENTION_DAYS: days })).toThrow();
    expect(() => readConfig({ JOBQ_JOB_RETENTION_DAYS: days })).toThrow();
  });

  it("reach the local stack's handlers and workers from its own environment", () => {
    const local = readLocalConfig({ JOBQ_RETENTION_DAYS: "14", JOBQ_JOB_RETENTION_DAYS: "60" });
    expect(local.retention).toEqual({ historyDays: 14, jobDays: 60 });

    const tables = Object.fromEntries(TABLES.map((def) => [def.id, `jobq-${def.id}`]));
    const env = handlerEnvironment({
      tables,
      dynamoEndpoint: "http://127.0.0.1:8000",
      retention: local.retention,
    });
    const defined = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined));
    expect(readConfig(defined).retention).toEqual({ historyDays: 14, jobDays: 60 });

    const plain = handlerEnvironment({ tables, dynamoEndpoint: "http://127.0.0.1:8000" });
    expect(plain).toMatchObject({ JOBQ_RETENTION_DAYS: "90", JOBQ_JOB_RETENTION_DAYS: undefined });
  });

  it("fail the local stack's start on a bad value, naming the variable", () => {
    expect(() => readLocalConfig({ JOBQ_JOB_RETENTION_DAYS: "0" })).toThrow(LocalConfigError);
    expect(() => readLocalConfig({ JOBQ_RETENTION_DAYS: "a week" })).toThrow(/JOBQ_RETENTION_DAYS/);
  });
});
