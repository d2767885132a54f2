import { apiHandler, json } from "../http";

/** GET /health: no auth, no I/O — says the API answers. */
export const handler = apiHandler(async () => json(200, { status: "ok" }));
