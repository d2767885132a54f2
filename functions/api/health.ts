import { streamConfig } from "../config";
import { apiHandler, json } from "../http";

/** GET /health: no auth, no I/O — says the API answers, and where the job stream is. */
export const handler = apiHandler(async () =>
  json(200, { status: "ok", streamUrl: streamConfig().streamUrl }),
);
