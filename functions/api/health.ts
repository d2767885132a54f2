import { streamConfig } from "../config";
import { apiHandler, json } from "../http";

// At import like every handler's configuration: locally the API server imports this module on
// the first request, after it listens and has set the stream's variables.
const { streamUrl } = streamConfig();

/** GET /health: no auth, no I/O — says the API answers, and where the job stream is. */
export const handler = apiHandler(async () => json(200, { status: "ok", streamUrl }));
