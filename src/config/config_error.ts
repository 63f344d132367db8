/**
 * The error of a bad config: one line naming the file, the JSON path and the problem.
 *
 * @example
 * ```ts
 * import { ConfigError } from "./config_error.ts";
 * const err = new ConfigError("cas.json5", "stores[1].filesystem.content_pth", "unknown field (did you mean content_path?)");
 * console.log(err.message);
 * // cas.json5: stores[1].filesystem.content_pth: unknown field (did you mean content_path?)
 * ```
 * @module
 */

/** A config file that cannot be used. `message` is one line: `FILE: PATH: PROBLEM`. */
export class ConfigError extends Error {
  /** The file (or other source label) the config came from. */
  readonly source: string;
  /** The JSON path of the offending value (`stores[1].filesystem`), or `line:col` for syntax errors. */
  readonly path: string;
  /** The problem alone, without file and path. */
  readonly problem: string;

  constructor(source: string, path: string, problem: string, options?: { cause?: unknown }) {
    super(path === "" ? `${source}: ${problem}` : `${source}: ${path}: ${problem}`, options);
    this.name = "ConfigError";
    this.source = source;
    this.path = path;
    this.problem = problem;
  }
}
