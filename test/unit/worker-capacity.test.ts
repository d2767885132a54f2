import { describe, expect, it } from "vitest";
import {
  CapacityDetectionError,
  type CapacityProbe,
  detectCapacity,
  gpusFromNvidiaSmi,
  type NvidiaSmiResult,
  parseCgroupV1Cpu,
  parseCgroupV1MemoryLimit,
  parseCgroupV2CpuMax,
  parseCgroupV2MemoryMax,
  parseNvidiaSmiGpus,
} from "../../worker/capacity";

// What `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader` prints on the
// instance types ECS GPU pools use.
const P5_H100 = [
  "0, NVIDIA H100 80GB HBM3, 81559 MiB",
  "1, NVIDIA H100 80GB HBM3, 81559 MiB",
  "2, NVIDIA H100 80GB HBM3, 81559 MiB",
  "3, NVIDIA H100 80GB HBM3, 81559 MiB",
  "4, NVIDIA H100 80GB HBM3, 81559 MiB",
  "5, NVIDIA H100 80GB HBM3, 81559 MiB",
  "6, NVIDIA H100 80GB HBM3, 81559 MiB",
  "7, NVIDIA H100 80GB HBM3, 81559 MiB",
  "",
].join("\n");
/**
 * Captured on a real machine (one H100, driver's own output of the worker's exact query,
 * 2026-11-25), byte for byte: the fixtures above are typed from the documented format.
 */
const CAPTURED_H100 = "0, NVIDIA H100 80GB HBM3, 81559 MiB\n";
const G4DN_T4 =
  "0, Tesla T4, 15360 MiB\n1, Tesla T4, 15360 MiB\n2, Tesla T4, 15360 MiB\n3, Tesla T4, 15360 MiB\n";
const G5_A10G = "0, NVIDIA A10G, 23028 MiB\n";
const P3_V100_CRLF = "0, Tesla V100-SXM2-16GB, 16384 MiB\r\n1, Tesla V100-SXM2-16GB, 16384 MiB\r\n";
const P4D_A100 = "0, NVIDIA A100-SXM4-40GB, 40960 MiB\n";
const MIG_NO_MEMORY = "0, NVIDIA H100 80GB HBM3, [N/A]\n";
const NAME_WITH_COMMA = "0, NVIDIA RTX 6000 Ada Generation, rev 2, 49140 MiB\n";
const DRIVER_MISSING =
  "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. " +
  "Make sure that the latest NVIDIA driver is installed and running.\n";

describe("parseNvidiaSmiGpus", () => {
  it("reads each GPU of a p5 (8 × H100)", () => {
    const gpus = parseNvidiaSmiGpus(P5_H100);

    expect(gpus).toHaveLength(8);
    expect(gpus[0]).toEqual({ index: 0, name: "NVIDIA H100 80GB HBM3", memoryMb: 81559 });
    expect(gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it.each([
    ["g4dn (4 × T4)", G4DN_T4, 4, { index: 0, name: "Tesla T4", memoryMb: 15360 }],
    ["g5 (A10G)", G5_A10G, 1, { index: 0, name: "NVIDIA A10G", memoryMb: 23028 }],
    ["p3 with CRLF line ends", P3_V100_CRLF, 2, { index: 0, name: "Tesla V100-SXM2-16GB", memoryMb: 16384 }],
    ["p4d (A100)", P4D_A100, 1, { index: 0, name: "NVIDIA A100-SXM4-40GB", memoryMb: 40960 }],
    [
      "a real H100 machine's output",
      CAPTURED_H100,
      1,
      { index: 0, name: "NVIDIA H100 80GB HBM3", memoryMb: 81559 },
    ],
  ])("reads %s", (_label, output, count, first) => {
    const gpus = parseNvidiaSmiGpus(output);

    expect(gpus).toHaveLength(count);
    expect(gpus[0]).toEqual(first);
  });

  it("counts a GPU whose memory the driver does not report", () => {
    expect(parseNvidiaSmiGpus(MIG_NO_MEMORY)).toEqual([
      { index: 0, name: "NVIDIA H100 80GB HBM3", memoryMb: null },
    ]);
  });

  it("keeps a name that holds commas whole", () => {
    expect(parseNvidiaSmiGpus(NAME_WITH_COMMA)).toEqual([
      { index: 0, name: "NVIDIA RTX 6000 Ada Generation, rev 2", memoryMb: 49140 },
    ]);
  });

  it("reads memory in GiB as MiB", () => {
    expect(parseNvidiaSmiGpus("0, Some GPU, 16 GiB")[0]?.memoryMb).toBe(16384);
  });

  it("reads empty output as no GPU", () => {
    expect(parseNvidiaSmiGpus("")).toEqual([]);
    expect(parseNvidiaSmiGpus("\n\n")).toEqual([]);
  });

  it.each([
    ["a header line (csv without noheader)", "index, name, memory.total [MiB]\n0, Tesla T4, 15360 MiB"],
    ["a line with too few fields", "0, Tesla T4"],
    ["a memory that is no number", "0, Tesla T4, lots"],
    ["an error message instead of the table", DRIVER_MISSING],
  ])("refuses %s with an error quoting the line", (_label, output) => {
    expect(() => parseNvidiaSmiGpus(output)).toThrow(CapacityDetectionError);
    expect(() => parseNvidiaSmiGpus(output)).toThrow(/nvidia-smi line \d+/);
  });
});

describe("gpusFromNvidiaSmi", () => {
  it("is no GPU when nvidia-smi is not installed (a CPU node)", () => {
    expect(gpusFromNvidiaSmi({ kind: "absent" })).toEqual([]);
  });

  it("is no GPU when nvidia-smi finds no device", () => {
    expect(gpusFromNvidiaSmi({ kind: "failed", code: 6, output: "No devices were found\n" })).toEqual([]);
  });

  it("fails clearly when nvidia-smi is installed but cannot reach the driver", () => {
    const broken: NvidiaSmiResult = { kind: "failed", code: 9, output: DRIVER_MISSING };

    expect(() => gpusFromNvidiaSmi(broken)).toThrow(CapacityDetectionError);
    expect(() => gpusFromNvidiaSmi(broken)).toThrow(/exit 9.*couldn't communicate.*JOBQ_NODE_GPU/s);
  });
});

describe("cgroup v2", () => {
  it("reads cpu.max without a quota as no limit", () => {
    expect(parseCgroupV2CpuMax("max 100000\n")).toBeNull();
  });

  it("reads cpu.max quota over period as vCPUs", () => {
    expect(parseCgroupV2CpuMax("200000 100000\n")).toBe(2);
    expect(parseCgroupV2CpuMax("25000 100000")).toBe(0.25);
    expect(parseCgroupV2CpuMax("150000 100000")).toBe(1.5);
  });

  it("keeps vCPUs to a thousandth", () => {
    expect(parseCgroupV2CpuMax("100000 300000")).toBe(0.333);
  });

  it("refuses a cpu.max it cannot read", () => {
    expect(() => parseCgroupV2CpuMax("")).toThrow(CapacityDetectionError);
    expect(() => parseCgroupV2CpuMax("lots 100000")).toThrow(/cpu.max/);
    expect(() => parseCgroupV2CpuMax("100000 0")).toThrow(CapacityDetectionError);
  });

  it("reads memory.max in MiB, max as no limit", () => {
    expect(parseCgroupV2MemoryMax("max\n")).toBeNull();
    expect(parseCgroupV2MemoryMax("4294967296\n")).toBe(4096);
    expect(parseCgroupV2MemoryMax("536870912")).toBe(512);
  });

  it("refuses a memory.max it cannot read", () => {
    expect(() => parseCgroupV2MemoryMax("4G")).toThrow(/memory.max/);
  });
});

describe("cgroup v1", () => {
  it("reads a quota of -1 as no limit", () => {
    expect(parseCgroupV1Cpu("-1\n", "100000\n")).toBeNull();
  });

  it("reads quota over period as vCPUs", () => {
    expect(parseCgroupV1Cpu("50000\n", "100000\n")).toBe(0.5);
    expect(parseCgroupV1Cpu("400000", "100000")).toBe(4);
  });

  it("reads the page-rounded 2^63 − 1 as no memory limit", () => {
    expect(parseCgroupV1MemoryLimit("9223372036854771712\n")).toBeNull();
  });

  it("reads a memory limit in MiB", () => {
    expect(parseCgroupV1MemoryLimit("2147483648\n")).toBe(2048);
  });
});

/** A machine made of fixtures: files by path, nvidia-smi's answer, the host's size. */
function machine(
  files: Record<string, string>,
  smi: NvidiaSmiResult,
  cpus = 16,
  memoryMb = 65_536,
): CapacityProbe {
  return {
    readFile: async (path) => files[path] ?? null,
    nvidiaSmi: async () => smi,
    cpuCount: () => cpus,
    totalMemoryBytes: () => memoryMb * 1024 * 1024,
  };
}

describe("detectCapacity", () => {
  it("takes a Fargate task's cgroup v2 limits, not the host's size", async () => {
    const probe = machine(
      { "/sys/fs/cgroup/cpu.max": "100000 100000\n", "/sys/fs/cgroup/memory.max": "2147483648\n" },
      { kind: "absent" },
    );

    const capacity = await detectCapacity({}, probe);

    expect(capacity).toMatchObject({ cpu: 1, memoryMb: 2048, gpu: 0, gpus: [] });
    expect(capacity.sources).toEqual({ cpu: "cgroup v2", memoryMb: "cgroup v2", gpu: "none" });
  });

  it("falls back to the host where cgroup v2 sets no limit", async () => {
    const probe = machine(
      { "/sys/fs/cgroup/cpu.max": "max 100000\n", "/sys/fs/cgroup/memory.max": "max\n" },
      { kind: "absent" },
      8,
      32_768,
    );

    const capacity = await detectCapacity({}, probe);

    expect(capacity).toMatchObject({ cpu: 8, memoryMb: 32_768, sources: { cpu: "host", memoryMb: "host" } });
  });

  it("reads cgroup v1 when there is no cgroup v2", async () => {
    const probe = machine(
      {
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "200000\n",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n",
      },
      { kind: "absent" },
    );

    const capacity = await detectCapacity({}, probe);

    expect(capacity).toMatchObject({
      cpu: 2,
      memoryMb: 1024,
      sources: { cpu: "cgroup v1", memoryMb: "cgroup v1" },
    });
  });

  it("uses the host without any cgroup file", async () => {
    const capacity = await detectCapacity({}, machine({}, { kind: "absent" }, 4, 8192));

    expect(capacity).toMatchObject({ cpu: 4, memoryMb: 8192, gpu: 0 });
  });

  it("never reports more than the host has", async () => {
    const probe = machine(
      { "/sys/fs/cgroup/cpu.max": "6400000 100000\n", "/sys/fs/cgroup/memory.max": "1099511627776\n" },
      { kind: "absent" },
      4,
      8192,
    );

    expect(await detectCapacity({}, probe)).toMatchObject({ cpu: 4, memoryMb: 8192 });
  });

  it("counts the GPUs nvidia-smi lists", async () => {
    const capacity = await detectCapacity({}, machine({}, { kind: "ok", stdout: G4DN_T4 }));

    expect(capacity.gpu).toBe(4);
    expect(capacity.gpus.map((g) => g.name)).toEqual(["Tesla T4", "Tesla T4", "Tesla T4", "Tesla T4"]);
    expect(capacity.sources.gpu).toBe("nvidia-smi");
  });

  it("lets the configured node size replace every detected figure", async () => {
    let smiRan = false;
    const probe: CapacityProbe = {
      ...machine({ "/sys/fs/cgroup/cpu.max": "100000 100000" }, { kind: "absent" }),
      nvidiaSmi: async () => {
        smiRan = true;
        return { kind: "failed", code: 9, output: DRIVER_MISSING };
      },
    };

    const capacity = await detectCapacity({ cpu: 8, memoryMb: 32_768, gpu: 2 }, probe);

    expect(capacity).toMatchObject({ cpu: 8, memoryMb: 32_768, gpu: 2 });
    expect(capacity.sources).toEqual({ cpu: "override", memoryMb: "override", gpu: "override" });
    expect(smiRan).toBe(false);
  });

  it("overrides only the figures given", async () => {
    const probe = machine({ "/sys/fs/cgroup/memory.max": "1073741824" }, { kind: "absent" }, 4);

    expect(await detectCapacity({ cpu: 2 }, probe)).toMatchObject({ cpu: 2, memoryMb: 1024, gpu: 0 });
  });

  it("fails start-up on a GPU node whose driver is broken", async () => {
    const probe = machine({}, { kind: "failed", code: 9, output: DRIVER_MISSING });

    await expect(detectCapacity({}, probe)).rejects.toThrow(CapacityDetectionError);
  });
});
