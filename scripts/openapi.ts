import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildOpenApiDocument } from "../functions/openapi";

/**
 * `npm run openapi`: writes docs/openapi.json, the OpenAPI document GET /openapi.json serves, so
 * it can be read and diffed in the repository. test/unit/openapi.test.ts fails when it is stale.
 */

export const OPENAPI_FILE = fileURLToPath(new URL("../docs/openapi.json", import.meta.url));

/** The file's exact text: stable key order (the code's), two-space indent, a final newline. */
export function openApiFileText(): string {
  return `${JSON.stringify(buildOpenApiDocument(), null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(OPENAPI_FILE, openApiFileText());
  console.log(`wrote ${OPENAPI_FILE}`);
}
