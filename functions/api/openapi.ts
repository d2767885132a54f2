import { apiHandler } from "../http";
import { buildOpenApiDocument } from "../openapi";

/** Built once per cold start: the document depends on the code alone. */
let document: string | undefined;

/** GET /openapi.json: no auth, no I/O — the OpenAPI 3.1 document of every route. */
export const handler = apiHandler(async () => {
  document ??= JSON.stringify(buildOpenApiDocument());
  return {
    statusCode: 200,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "public, max-age=300" },
    body: document,
  };
});
