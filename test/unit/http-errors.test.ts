import { ProvisionedThroughputExceededException } from "@aws-sdk/client-dynamodb";
import { ThrottlingException } from "@aws-sdk/client-eventbridge";
import { describe, expect, it } from "vitest";
import { NotFoundError } from "../../core/errors";
import { errorResponse } from "../../functions/http";

/**
 * The one error-to-HTTP mapping (functions/http.ts): jobq's own errors by their code; AWS
 * throttling that outlived the SDK's retries is a 429 the client may retry, not a 500.
 */

describe("errorResponse", () => {
  it("answers AWS throttling errors with 429 too_many_requests and a Retry-After", () => {
    const errors = [
      new ProvisionedThroughputExceededException({ message: "Rate exceeded", $metadata: {} }),
      new ThrottlingException({ message: "Rate exceeded", $metadata: {} }),
      // As the SDK marks a throttling error it does not model.
      Object.assign(new Error("Slow down"), { name: "SlowDown", $retryable: { throttling: true } }),
    ];
    for (const error of errors) {
      const response = errorResponse(error);
      expect(response.statusCode).toBe(429);
      expect(response.headers).toMatchObject({ "retry-after": "2" });
      expect(JSON.parse(response.body)).toMatchObject({ error: { code: "too_many_requests" } });
    }
  });

  it("keeps jobq's own errors and answers anything else 500 internal", () => {
    expect(errorResponse(new NotFoundError("job job_x not found")).statusCode).toBe(404);
    const unknown = errorResponse(new TypeError("x is undefined"));
    expect(unknown.statusCode).toBe(500);
    expect(JSON.parse(unknown.body)).toEqual({ error: { code: "internal", message: "internal error" } });
  });
});
