import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import type { CapacityOverride } from "./config";

/**
 * What this node can really run: the container's CPU and memory limits (cgroup v2, else cgroup
 * v1, else the host) and its GPUs (nvidia-smi). A Fargate task or an ECS task with limits sees
 * its own share here, not the host's, so the scheduler never books more than the kernel allows.
 * The parsers are pure and take the files' text; detectCapacity does the reading.
 */

export interface NodeResources {
  readonly cpu: number;
  readonly memoryMb: number;
  readonly gpu: number;
}

export interface GpuInfo {
  readonly index: number;
  readonly name: string;
  /** null when the driver reports none ("[N/A]", e.g. some MIG setups). */
  readonly memoryMb: number | null;
}

export type CapacitySource = "override" | "cgroup v2" | "cgroup v1" | "host" | "nvidia-smi" | "none";

export interface DetectedCapacity extends NodeResources {
  readonly gpus: readonly GpuInfo[];
  /** Where each figure came from, for the start-up log line. */
  readonly sources: {
    readonly cpu: CapacitySource;
    readonly memoryMb: CapacitySource;
    readonly gpu: CapacitySource;
  };
}

/** A limit file or nvidia-smi said something this code cannot read; the message quotes it. */
export class CapacityDetectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CapacityDetectionError";
  }
}

const MIB = 1024 * 1024;
/** cgroup v1 writes "no limit" as a page-rounded 2^63 − 1; anything this large is no limit. */
const V1_UNLIMITED_BYTES = 2 ** 60;

/** A thousandth of a vCPU, as jobs ask for (core/job.ts). */
const thousandths = (n: number): number => Math.round(n * 1000) / 1000;

/**
 * cgroup v2 `cpu.max`: `"<quota> <period>"` in microseconds, or `"max <period>"` for no limit.
 * Returns vCPUs (quota / period), null for no limit.
 */
export function parseCgroupV2CpuMax(text: string): number | null {
  const parts = text.trim().split(/\s+/);
  const [quota, period = "100000"] = parts;
  if (parts.length > 2 || quota === undefined || quota === "") {
    throw new CapacityDetectionError(`cpu.max is not "<quota> <period>": ${JSON.stringify(text)}`);
  }
  if (quota === "max") return null;
  return cpuFromQuota(quota, period, "cpu.max", text);
}

/** cgroup v2 `memory.max`: bytes, or `"max"` for no limit. Returns MiB, null for no limit. */
export function parseCgroupV2MemoryMax(text: string): number | null {
  const value = text.trim();
  if (value === "max") return null;
  return bytesToMb(value, "memory.max");
}

/** cgroup v1 `cpu.cfs_quota_us` (−1: no limit) and `cpu.cfs_period_us`. Returns vCPUs or null. */
export function parseCgroupV1Cpu(quotaText: string, periodText: string): number | null {
  const quota = quotaText.trim();
  if (quota === "-1") return null;
  return cpuFromQuota(
    quota,
    periodText.trim(),
    "cpu.cfs_quota_us",
    `${quotaText.trim()} / ${periodText.trim()}`,
  );
}

/** cgroup v1 `memory.limit_in_bytes`: a huge value means no limit. Returns MiB or null. */
export function parseCgroupV1MemoryLimit(text: string): number | null {
  const value = text.trim();
  if (/^\d+$/.test(value) && Number(value) >= V1_UNLIMITED_BYTES) return null;
  return bytesToMb(value, "memory.limit_in_bytes");
}

function cpuFromQuota(quota: string, period: string, file: string, text: string): number {
  if (!/^\d+$/.test(quota) || !/^\d+$/.test(period) || Number(period) === 0) {
    throw new CapacityDetectionError(`${file} holds no CPU quota: ${JSON.stringify(text)}`);
  }
  return thousandths(Number(quota) / Number(period));
}

function bytesToMb(value: string, file: string): number {
  if (!/^\d+$/.test(value)) {
    throw new CapacityDetectionError(`${file} is neither a byte count nor "max": ${JSON.stringify(value)}`);
  }
  return Math.floor(Number(value) / MIB);
}

/**
 * `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader`: one line per GPU,
 * e.g. `0, NVIDIA H100 80GB HBM3, 81559 MiB`. Empty output is no GPU. The name may itself hold
 * commas, so index is the first field and memory the last.
 */
export function parseNvidiaSmiGpus(text: string): GpuInfo[] {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
  return lines.map((line, i) => {
    const fields = line.split(",").map((f) => f.trim());
    const index = fields[0] ?? "";
    const memory = fields.at(-1) ?? "";
    const name = fields.slice(1, -1).join(", ");
    if (fields.length < 3 || !/^\d+$/.test(index) || name === "") {
      throw new CapacityDetectionError(
        `nvidia-smi line ${i + 1} is not "index, name, memory.total": ${JSON.stringify(line)}`,
      );
    }
    return { index: Number(index), name, memoryMb: parseGpuMemory(memory, line, i + 1) };
  });
}

function parseGpuMemory(field: string, line: string, lineNo: number): number | null {
  if (/^\[(N\/A|Not Supported|Unknown Error)\]$/i.test(field)) return null;
  const match = /^(\d+(?:\.\d+)?)\s*(MiB|GiB|MB|GB)?$/i.exec(field);
  if (!match?.[1]) {
    throw new CapacityDetectionError(
      `nvidia-smi line ${lineNo} has no memory.total in MiB: ${JSON.stringify(line)}`,
    );
  }
  const amount = Number(match[1]);
  return /^g/i.test(match[2] ?? "") ? Math.round(amount * 1024) : Math.round(amount);
}

/** What nvidia-smi answered: not installed, its output, or a failure with what it printed. */
export type NvidiaSmiResult =
  | { readonly kind: "absent" }
  | { readonly kind: "ok"; readonly stdout: string }
  | { readonly kind: "failed"; readonly code: number | string | null; readonly output: string };

/**
 * GPUs from nvidia-smi's answer. Not installed: a CPU node, no GPU. Installed but failing is a
 * broken GPU node (driver not loaded, device not passed through): a clear error beats a node
 * that silently offers no GPU — unless the failure is nvidia-smi's own "No devices were found".
 */
export function gpusFromNvidiaSmi(result: NvidiaSmiResult): GpuInfo[] {
  switch (result.kind) {
    case "absent":
      return [];
    case "ok":
      return parseNvidiaSmiGpus(result.stdout);
    case "failed":
      if (/no devices were found/i.test(result.output)) return [];
      throw new CapacityDetectionError(
        `nvidia-smi failed (exit ${String(result.code)}): ${result.output.trim().slice(0, 500) || "no output"}` +
          " — set JOBQ_NODE_GPU to state the GPU count instead",
      );
  }
}

/** The machine as detectCapacity sees it; tests give it fixtures. */
export interface CapacityProbe {
  /** A file's text, or null when it does not exist. */
  readFile(path: string): Promise<string | null>;
  nvidiaSmi(): Promise<NvidiaSmiResult>;
  cpuCount(): number;
  totalMemoryBytes(): number;
}

export const systemProbe: CapacityProbe = {
  async readFile(path) {
    try {
      return await readFile(path, "utf8");
    } catch (error) {
      if (isCode(error, "ENOENT") || isCode(error, "ENOTDIR")) return null;
      throw error;
    }
  },
  nvidiaSmi() {
    return new Promise((resolve) => {
      execFile(
        "nvidia-smi",
        ["--query-gpu=index,name,memory.total", "--format=csv,noheader"],
        { timeout: 15_000, windowsHide: true },
        (error, stdout, stderr) => {
          if (!error) return resolve({ kind: "ok", stdout });
          if (isCode(error, "ENOENT")) return resolve({ kind: "absent" });
          const code = (error as NodeJS.ErrnoException & { code?: number | string }).code ?? null;
          resolve({ kind: "failed", code, output: `${stdout}${stderr}` || error.message });
        },
      );
    });
  },
  cpuCount: () => cpus().length,
  totalMemoryBytes: () => totalmem(),
};

const V2_CPU = "/sys/fs/cgroup/cpu.max";
const V2_MEMORY = "/sys/fs/cgroup/memory.max";
const V1_CPU_DIRS = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"];
const V1_MEMORY = "/sys/fs/cgroup/memory/memory.limit_in_bytes";

/**
 * The node's capacity: each figure from the override when given, else the tightest of the
 * cgroup limit and the host (a limit above the host's size means nothing).
 */
export async function detectCapacity(
  override: CapacityOverride = {},
  probe: CapacityProbe = systemProbe,
): Promise<DetectedCapacity> {
  const [cpu, memoryMb, gpus] = await Promise.all([
    override.cpu !== undefined ? { value: override.cpu, source: "override" as const } : detectCpu(probe),
    override.memoryMb !== undefined
      ? { value: override.memoryMb, source: "override" as const }
      : detectMemory(probe),
    override.gpu !== undefined
      ? { list: [] as GpuInfo[], count: override.gpu, source: "override" as const }
      : probe.nvidiaSmi().then((r) => {
          const list = gpusFromNvidiaSmi(r);
          return {
            list,
            count: list.length,
            source: list.length > 0 ? ("nvidia-smi" as const) : ("none" as const),
          };
        }),
  ]);
  return {
    cpu: cpu.value,
    memoryMb: memoryMb.value,
    gpu: gpus.count,
    gpus: gpus.list,
    sources: { cpu: cpu.source, memoryMb: memoryMb.source, gpu: gpus.source },
  };
}

async function detectCpu(probe: CapacityProbe): Promise<{ value: number; source: CapacitySource }> {
  const host = Math.max(1, probe.cpuCount());
  const v2 = await probe.readFile(V2_CPU);
  if (v2 !== null) return capped(parseCgroupV2CpuMax(v2), host, "cgroup v2");
  for (const dir of V1_CPU_DIRS) {
    const quota = await probe.readFile(`${dir}/cpu.cfs_quota_us`);
    const period = await probe.readFile(`${dir}/cpu.cfs_period_us`);
    if (quota !== null && period !== null) return capped(parseCgroupV1Cpu(quota, period), host, "cgroup v1");
  }
  return { value: host, source: "host" };
}

async function detectMemory(probe: CapacityProbe): Promise<{ value: number; source: CapacitySource }> {
  const host = Math.floor(probe.totalMemoryBytes() / MIB);
  const v2 = await probe.readFile(V2_MEMORY);
  if (v2 !== null) return capped(parseCgroupV2MemoryMax(v2), host, "cgroup v2");
  const v1 = await probe.readFile(V1_MEMORY);
  if (v1 !== null) return capped(parseCgroupV1MemoryLimit(v1), host, "cgroup v1");
  return { value: host, source: "host" };
}

function capped(
  limit: number | null,
  host: number,
  source: CapacitySource,
): { value: number; source: CapacitySource } {
  if (limit === null || limit >= host) return { value: host, source: "host" };
  return { value: limit, source };
}

function isCode(error: unknown, code: string): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === code;
}
