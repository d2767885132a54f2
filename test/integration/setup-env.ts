import { inject } from "vitest";
import { applyHandlerEnvironment } from "../../local/config";

// Runs before each integration test file is imported, so the handler modules a test imports read
// the shared DynamoDB Local and the test tables at their cold start, exactly as under `npm start`.
applyHandlerEnvironment({ tables: inject("tables"), dynamoEndpoint: inject("dynamoEndpoint") });
