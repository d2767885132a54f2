import type { APIGatewayProxyEvent } from "aws-lambda";
import { exportContext, importPage } from "../../app/export";
import { PayloadTooLargeError, ValidationError } from "../../core/errors";
import { apiHandler, json, principalOf } from "../http";

const ctx = exportContext();

/** API Gateway's own limit on a request body; the CLI sends a file in smaller chunks. */
const MAX_IMPORT_BODY_BYTES = 10 * 1024 * 1024;

/** POST /admin/import (admin): NDJSON lines of an export; 200 with the counts per kind. */
export const handler = apiHandler(async (event) =>
  json(200, await importPage(ctx, principalOf(event), () => ndjsonBody(event))),
);

function ndjsonBody(event: APIGatewayProxyEvent): string {
  const raw =
    event.isBase64Encoded && event.body ? Buffer.from(event.body, "base64").toString("utf8") : event.body;
  if (raw === null || raw === undefined || raw.trim() === "") {
    throw new ValidationError([{ path: "", message: "an NDJSON body is required" }]);
  }
  const bytes = Buffer.byteLength(raw, "utf8");
  if (bytes > MAX_IMPORT_BODY_BYTES) {
    throw new PayloadTooLargeError(`request body is ${bytes} bytes; the limit is ${MAX_IMPORT_BODY_BYTES}`, {
      limitBytes: MAX_IMPORT_BODY_BYTES,
    });
  }
  return raw;
}
