import type { APIGatewayProxyResult } from "aws-lambda";

/**
 * Cross-origin access for the web dashboard in AWS, where the page (CloudFront) and the API (API
 * Gateway) have different origins. Locally the page and the API share one origin and none of this
 * applies. Pure data and one function, so the CDK construct (preflight, gateway responses) and the
 * handlers (functions/http.ts) agree on the same names.
 */

/** Request headers the page sends beyond the CORS-safelisted ones (API.md). */
export const CORS_ALLOW_HEADERS: readonly string[] = ["Authorization", "Content-Type", "Idempotency-Key"];

/** Response headers the page may read beyond the CORS-safelisted ones (API.md). */
export const CORS_EXPOSE_HEADERS: readonly string[] = ["Retry-After", "Idempotent-Replayed"];

/** The response with the headers that let a page of `origin` read it; unchanged without an origin. */
export function withCorsOrigin(
  response: APIGatewayProxyResult,
  origin: string | undefined,
): APIGatewayProxyResult {
  if (origin === undefined) return response;
  return {
    ...response,
    headers: {
      ...response.headers,
      "access-control-allow-origin": origin,
      "access-control-expose-headers": CORS_EXPOSE_HEADERS.join(", "),
      // One fixed origin, but a shared cache must still not hand this answer to another origin.
      vary: "Origin",
    },
  };
}
