import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";

/**
 * Where the CLI connects: a profile saved by `jobq login` in ~/.config/jobq/config.json, the
 * JOBQ_URL / JOBQ_TOKEN environment, or the defaults of a fresh `npm start`.
 */

export const DEFAULT_URL = "http://127.0.0.1:3000";
export const DEFAULT_TOKEN = "local-dev-token";
export const DEFAULT_PROFILE = "default";

const profileSchema = z.object({ url: z.string(), token: z.string() });
const configSchema = z.object({ profiles: z.record(z.string(), profileSchema).default({}) });

export type Profile = z.infer<typeof profileSchema>;
export type ConfigFile = z.infer<typeof configSchema>;

export interface Connection {
  readonly url: string;
  readonly token: string;
  /** JOBQ_STREAM_URL: the stream's URL, instead of GET /health's streamUrl. */
  readonly streamUrl: string | undefined;
}

/** A config file that cannot be read as one, or a profile it does not hold: a usage error. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

type Env = Readonly<Record<string, string | undefined>>;

export function configPath(env: Env): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  return join(base, "jobq", "config.json");
}

export async function readConfig(path: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { profiles: {} };
    throw error;
  }
  try {
    return configSchema.parse(JSON.parse(text));
  } catch (error) {
    throw new ConfigError(`${path} is not a jobq config file: ${(error as Error).message}`);
  }
}

/** Saves a profile; the file holds tokens, so only its owner may read it (mode 0600). */
export async function saveProfile(path: string, name: string, profile: Profile): Promise<void> {
  const config = await readConfig(path);
  const next: ConfigFile = { profiles: { ...config.profiles, [name]: profile } };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
  // writeFile's mode applies only when it creates the file: tighten one that was there before.
  await chmod(path, 0o600);
}

/**
 * A profile named with --profile (or JOBQ_PROFILE) wins over the environment; otherwise
 * JOBQ_URL / JOBQ_TOKEN win over the `default` profile, which wins over the defaults of a fresh
 * `npm start`.
 */
export async function resolveConnection(
  options: { readonly profile?: string },
  env: Env,
): Promise<Connection> {
  const config = await readConfig(configPath(env));
  const named = options.profile ?? env.JOBQ_PROFILE;
  const streamUrl = env.JOBQ_STREAM_URL || undefined;
  if (named !== undefined && named !== "") {
    const profile = config.profiles[named];
    if (!profile)
      throw new ConfigError(`no profile "${named}" in ${configPath(env)} (jobq login --profile ${named})`);
    return { ...profile, streamUrl };
  }
  const fallback = config.profiles[DEFAULT_PROFILE];
  return {
    url: env.JOBQ_URL || fallback?.url || DEFAULT_URL,
    token: env.JOBQ_TOKEN || fallback?.token || DEFAULT_TOKEN,
    streamUrl,
  };
}
