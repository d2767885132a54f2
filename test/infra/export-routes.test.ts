import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { ROUTES } from "../../functions/routes";
import type { JobqStack } from "../../lib/jobq-stack";
import {
  actionsOf,
  dynamoStatements,
  logicalId,
  mentions,
  roleIdOf,
  roleStatements,
  synthJobqStack,
} from "./fixtures";

/**
 * GET /admin/export and POST /admin/import (app/export.ts): the export may only read the Jobs and
 * Policy tables whole; the import may only create items there. Neither can
 * touch the Tokens or Nodes tables, delete anything or stop an execution, and no other route may
 * Scan the Jobs table (a Scan is O(table): for an admin's rare export only).
 */

let stack: JobqStack;
let template: Template;

beforeAll(() => {
  ({ stack, template } = synthJobqStack());
});

function statementsOf(routeId: string) {
  const fn = stack.jobApi.functions[routeId];
  if (!fn) throw new Error(`no function for route ${routeId}`);
  return roleStatements(template, roleIdOf(fn));
}

function actionsOn(statements: ReturnType<typeof statementsOf>, tableId: string): string[] {
  return [
    ...new Set(
      dynamoStatements(statements)
        .filter((s) => mentions(s, tableId))
        .flatMap(actionsOf),
    ),
  ].sort();
}

describe("export and import routes", () => {
  it("lets the export only Scan the jobs and policy tables", () => {
    const statements = statementsOf("ExportState");
    expect(actionsOn(statements, logicalId(stack.store.jobsTable))).toEqual(["dynamodb:Scan"]);
    expect(actionsOn(statements, logicalId(stack.store.policyTable))).toEqual(["dynamodb:Scan"]);
    expect(mentions(statements, logicalId(stack.store.tokensTable))).toBe(false);
    expect(mentions(statements, logicalId(stack.store.nodesTable))).toBe(false);
    expect(
      statements.flatMap(actionsOf).some((a) => a.startsWith("states:") || a.startsWith("events:")),
    ).toBe(false);
  });

  it("lets the import create items, and nothing that deletes, reads tokens, starts or stops executions", () => {
    const statements = statementsOf("ImportState");
    expect(actionsOn(statements, logicalId(stack.store.jobsTable))).toEqual([
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
    ]);
    expect(actionsOn(statements, logicalId(stack.store.policyTable))).toEqual(["dynamodb:PutItem"]);
    expect(mentions(statements, logicalId(stack.store.tokensTable))).toBe(false);
    const actions = statements.flatMap(actionsOf);
    // Imported jobs wait for admission like any other: the scheduler starts their executions.
    expect(actions.some((a) => /DeleteItem|StartExecution|StopExecution|Scan/.test(a))).toBe(false);
  });

  it("lets no other route Scan the jobs table", () => {
    const scanning = ROUTES.filter((r) => r.jobsTable.includes("dynamodb:Scan")).map((r) => r.id);
    expect(scanning).toEqual(["ExportState"]);
  });
});
