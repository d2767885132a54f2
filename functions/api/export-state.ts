import { exportContext, exportPage, toNdjson } from "../../app/export";
import { apiHandler, principalOf, queryParameters } from "../http";

const ctx = exportContext();

/**
 * GET /admin/export (admin): one page of jobq's state as NDJSON; its last line holds the cursor
 * of the next page (also in the `x-jobq-next-cursor` header), null at the end.
 */
export const handler = apiHandler(async (event) => {
  const page = await exportPage(ctx, principalOf(event), queryParameters(event));
  return {
    statusCode: 200,
    headers: {
      "content-type": "application/x-ndjson; charset=utf-8",
      // Payloads and results are the users' data: no cache between the server and the admin.
      "cache-control": "no-store",
      ...(page.nextCursor ? { "x-jobq-next-cursor": page.nextCursor } : {}),
    },
    body: toNdjson(page.lines),
  };
});
