/**
 * Reads a NativeLink-format JSON5 config file into the canonical {@linkcode CairnConfig}.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./load_config.ts";
 * const config = await loadConfig("config/local.json5");
 * for (const server of config.servers) console.log(server.listener.http.socket_address);
 * ```
 * @module
 */
import JSON5 from "json5";
import { resolve } from "node:path";
import { checkReferences } from "./check_references.ts";
import { ConfigError } from "./config_error.ts";
import type { EnvSource } from "./env_expand.ts";
import { ROOT } from "./nativelink_schema.ts";
import type { CairnConfig } from "./types.ts";
import { type PathField, type Reference, validate } from "./validate.ts";

export type { PathField } from "./validate.ts";

interface ConfigMeta {
  readonly source: string;
  readonly baseDir: string;
  readonly paths: readonly PathField[];
}

const META = new WeakMap<CairnConfig, ConfigMeta>();

/**
 * The directory relative paths of `config` were resolved against (the start directory), or `undefined` for a
 * config object not made by {@linkcode parseConfig}.
 */
export function configBaseDir(config: CairnConfig): string | undefined {
  return META.get(config)?.baseDir;
}

/** The file (or source label) `config` was read from. */
export function configSource(config: CairnConfig): string | undefined {
  return META.get(config)?.source;
}

/** Every path field of `config` (JSON path, absolute value, role), as resolved at load. */
export function configPathFields(config: CairnConfig): readonly PathField[] {
  return META.get(config)?.paths ?? [];
}

/** Options of {@linkcode parseConfig} and {@linkcode loadConfig}. */
export interface ConfigOptions {
  /**
   * Receives one-line notes about input that is accepted but misplaced or deprecated (e.g. a store field
   * written beside its kind key, as NativeLink's production example does). Default: ignored.
   */
  onWarning?: (message: string) => void;
  /**
   * The directory relative paths in the config are resolved against, once, at load (default: the current
   * working directory, i.e. where Cairn was started). Worker processes get the parent's through `--base-dir`.
   */
  baseDir?: string;
}

/**
 * Parses and validates config text. `source` names the file in messages; `env` defaults to the process
 * environment.
 *
 * @throws {ConfigError} on a syntax error, a schema violation or a dangling name.
 */
export function parseConfig(
  text: string,
  source: string,
  env?: EnvSource,
  options?: ConfigOptions,
): CairnConfig {
  let raw: unknown;
  try {
    raw = JSON5.parse(text);
  } catch (err) {
    const e = err as { lineNumber?: number; columnNumber?: number; message?: string };
    const problem = String(e.message ?? err).replace(/^JSON5: /, "").replace(/ at \d+:\d+$/, "");
    const where = e.lineNumber === undefined ? "" : `${e.lineNumber}:${e.columnNumber}`;
    throw new ConfigError(`${source}${where ? `:${where}` : ""}`, "", `invalid JSON5: ${problem}`, {
      cause: err,
    });
  }
  const refs: Reference[] = [];
  const paths: PathField[] = [];
  const baseDir = resolve(options?.baseDir ?? Deno.cwd());
  const config = validate(ROOT, raw, "", {
    source,
    env: env ?? Deno.env.toObject(),
    refs,
    warn: (message) => options?.onWarning?.(`${source}: ${message}`),
    baseDir,
    paths,
  }) as CairnConfig;
  checkReferences(config, refs, source);
  META.set(config, { source, baseDir, paths });
  return config;
}

/**
 * Reads and validates the config file at `path`.
 *
 * @throws {ConfigError} when the file cannot be read or is not a valid config.
 */
export async function loadConfig(
  path: string,
  env?: EnvSource,
  options?: ConfigOptions,
): Promise<CairnConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    const reason = err instanceof Deno.errors.NotFound
      ? "no such file"
      : String((err as Error).message ?? err);
    throw new ConfigError(path, "", `cannot read config file: ${reason}`, { cause: err });
  }
  return parseConfig(text, path, env, options);
}
