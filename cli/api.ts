import type { StatsView } from "../app/stats";
import type { Job, JobqClient, Page } from "../client";
import type { BulkResult, RetryJobRequest } from "../core/job";
import type { CreateScheduleRequest, Schedule, UpdateScheduleRequest } from "../core/schedule";

/**
 * The routes the typed client has no method for yet, through `client.call`. Kept in this one
 * module so each can be swapped for the client's own method when it lands, without touching the
 * commands.
 */

export type { StatsView };

/** A schedule as GET /schedules/{id} answers it (docs/schedules.md). */
export type ScheduleView = Schedule & {
  readonly nextRunAt: string | null;
  readonly nextRuns: readonly string[];
};

function segment(value: string): string {
  return encodeURIComponent(value);
}

export async function getStats(client: JobqClient, window?: string): Promise<StatsView> {
  return (await client.call<StatsView>("GET", "/stats", { query: { window } })).body;
}

export async function retryJob(client: JobqClient, id: string, request: RetryJobRequest): Promise<Job> {
  return (await client.call<Job>("POST", `/jobs/${segment(id)}/retry`, { body: request })).body;
}

export async function bulkAct(
  client: JobqClient,
  action: "cancel" | "retry",
  body: Record<string, unknown>,
): Promise<BulkResult> {
  return (await client.call<BulkResult>("POST", `/jobs/${action}`, { body })).body;
}

export async function listSchedules(
  client: JobqClient,
  query: { readonly limit?: number; readonly cursor?: string; readonly owner?: string },
): Promise<Page<ScheduleView>> {
  return (await client.call<Page<ScheduleView>>("GET", "/schedules", { query })).body;
}

export async function getSchedule(client: JobqClient, id: string): Promise<ScheduleView> {
  return (await client.call<ScheduleView>("GET", `/schedules/${segment(id)}`)).body;
}

export async function createSchedule(
  client: JobqClient,
  request: CreateScheduleRequest | Record<string, unknown>,
): Promise<ScheduleView> {
  return (await client.call<ScheduleView>("POST", "/schedules", { body: request })).body;
}

export async function updateSchedule(
  client: JobqClient,
  id: string,
  change: UpdateScheduleRequest | Record<string, unknown>,
): Promise<ScheduleView> {
  return (await client.call<ScheduleView>("PATCH", `/schedules/${segment(id)}`, { body: change })).body;
}

export async function deleteSchedule(client: JobqClient, id: string): Promise<void> {
  await client.call<null>("DELETE", `/schedules/${segment(id)}`);
}

/** POST /schedules/{id}/trigger: the fired job (201), or the skipped fire (200). */
export async function triggerSchedule(client: JobqClient, id: string): Promise<Record<string, unknown>> {
  return (await client.call<Record<string, unknown>>("POST", `/schedules/${segment(id)}/trigger`)).body;
}
