import { describe, expect, it } from "vitest";
import {
  canDrain,
  formatAge,
  heartbeatAgeMs,
  loadLevel,
  nodeSummary,
  share,
  usageText,
} from "../../web/src/views/pools-model";

const NOW = new Date("2026-12-06T12:00:00.000Z");

describe("pools view model", () => {
  it("shares capacity in use, bounded to 0..1, and has none without capacity", () => {
    expect(share(1, 4)).toBe(0.25);
    expect(share(6, 4)).toBe(1);
    expect(share(0, 0)).toBeNull();
  });

  it("says usage in the capacity's unit", () => {
    expect(usageText("cpu", 3, 8)).toBe("3 of 8 vCPU in use (38\u00a0%)");
    expect(usageText("memoryMb", 512, 4096)).toBe("0.5 of 4 GB in use (13\u00a0%)");
    expect(usageText("memoryMb", 256, 512)).toBe("256 of 512 MB in use (50\u00a0%)");
    expect(usageText("gpu", 1, 2)).toBe("1 of 2 GPU in use (50\u00a0%)");
    expect(usageText("gpu", 0, 0)).toBe("no GPU");
    expect(usageText("memoryMb", 0, 0)).toBe("no memory");
  });

  it("colours a bar by how full it is", () => {
    expect(loadLevel(null)).toBe("none");
    expect(loadLevel(0.5)).toBe("low");
    expect(loadLevel(0.7)).toBe("high");
    expect(loadLevel(0.95)).toBe("full");
  });

  it("ages heartbeats in words, never negative when the browser's clock is behind", () => {
    expect(heartbeatAgeMs("2026-12-06T11:59:55.000Z", NOW)).toBe(5_000);
    expect(heartbeatAgeMs("2026-12-06T12:00:03.000Z", NOW)).toBe(0);
    expect(heartbeatAgeMs("not a time", NOW)).toBeNull();
    expect(formatAge(4_200)).toBe("4 s ago");
    expect(formatAge(185_000)).toBe("3 min ago");
    expect(formatAge(7_200_000)).toBe("2 h ago");
    expect(formatAge(5 * 86_400_000)).toBe("5 d ago");
    expect(formatAge(null)).toBe("never");
  });

  it("offers drain only for a node that is up, and counts nodes per status", () => {
    expect(canDrain("up")).toBe(true);
    expect(canDrain("draining")).toBe(false);
    expect(canDrain("lost")).toBe(false);
    expect(
      nodeSummary([{ status: "up" }, { status: "lost" }, { status: "up" }, { status: "draining" }]),
    ).toBe("2 up, 1 draining, 1 lost");
    expect(nodeSummary([])).toBe("no nodes");
  });
});
