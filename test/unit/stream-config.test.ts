import { describe, expect, it } from "vitest";
import { readStreamConfig } from "../../functions/config";

// GET /health answers `streamUrl: streamConfig().streamUrl`: with jobq:target=localstack the stack
// has no WebSocket stream and sets no JOBQ_STREAM_URL (test/infra/localstack.test.ts).
describe("readStreamConfig", () => {
  it("gives no stream URL where the stack has no stream", () => {
    expect(readStreamConfig({}).streamUrl).toBeNull();
  });

  it("gives the stream URL the stack set", () => {
    const url = "wss://abc.execute-api.eu-west-1.amazonaws.com/v1";
    expect(readStreamConfig({ JOBQ_STREAM_URL: url }).streamUrl).toBe(url);
  });
});
