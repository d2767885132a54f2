import type { APIGatewayProxyEvent } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../core/errors";
import { pageQuerySchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { header, pathParameter, queryParameters } from "../../functions/http";

/**
 * functions/http.ts against the event a Lambda gets in AWS: JSON.parse'd, so a client's header or
 * query named `__proto__` is an own key of an ordinary object, and `constructor` or `toString`
 * name Object.prototype's members on every map that lacks them.
 */

const NAMES = ["constructor", "toString", "__proto__", "valueOf", "hasOwnProperty", "isPrototypeOf"];

/** The proxy event as the Lambda runtime parses it. */
function parsedEvent(parts: {
  headers?: Record<string, string>;
  query?: Record<string, string>;
  path?: Record<string, string>;
}): APIGatewayProxyEvent {
  const json = (value: Record<string, string> | undefined) =>
    value === undefined
      ? "null"
      : `{${Object.entries(value)
          .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
          .join(",")}}`;
  return JSON.parse(
    `{"headers":${json(parts.headers)},"queryStringParameters":${json(parts.query)},"pathParameters":${json(parts.path)}}`,
  ) as APIGatewayProxyEvent;
}

describe("header()", () => {
  it.each(NAMES)("finds no header %s when the request has none", (name) => {
    expect(header(parsedEvent({ headers: { accept: "*/*" } }), name)).toBeUndefined();
  });

  it.each(NAMES)("finds a header named %s that was sent, in any case", (name) => {
    const event = parsedEvent({ headers: { [name.toUpperCase()]: "v" } });
    expect(header(event, name)).toBe("v");
  });
});

describe("queryParameters()", () => {
  it.each(NAMES)("keeps %s as an own parameter, which a strict schema refuses with a 400", (name) => {
    const query = queryParameters(parsedEvent({ query: { [name]: "1" } }));

    expect(Object.keys(query)).toEqual([name]);
    expect(Object.getPrototypeOf(query)).toBe(Object.prototype);
    expect(() => parseRequest(pageQuerySchema, query)).toThrow(ValidationError);
  });

  it("reads the documented parameters beside them", () => {
    const query = queryParameters(parsedEvent({ query: { ["__proto__"]: "x", limit: "5" } }));
    expect(Object.keys(query)).toEqual(["__proto__", "limit"]);
    expect(query.limit).toBe("5");
  });
});

describe("pathParameter()", () => {
  it.each(NAMES)("says a missing %s parameter is required instead of reading Object.prototype", (name) => {
    expect(() => pathParameter(parsedEvent({ path: { id: "job_1" } }), name)).toThrow(ValidationError);
    expect(() => pathParameter(parsedEvent({}), name)).toThrow(ValidationError);
  });

  it.each(NAMES)("reads a path parameter whose value is %s", (name) => {
    expect(pathParameter(parsedEvent({ path: { id: name } }), "id")).toBe(name);
  });
});
