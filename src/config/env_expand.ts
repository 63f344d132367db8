/**
 * `${VAR}` and `${VAR:-default}` expansion in config strings (as NativeLink's shellexpand does).
 *
 * `${VAR:-default}` uses the default when VAR is unset or empty; `${VAR-default}` only when unset. A `$` not
 * followed by `{` is kept as is.
 *
 * @example
 * ```ts
 * import { expandEnv } from "./env_expand.ts";
 * expandEnv("${DIR:-/tmp}/cas", { DIR: undefined }); // { ok: true, value: "/tmp/cas" }
 * ```
 * @module
 */

/** Variables to expand from; `undefined` means unset. */
export type EnvSource = Readonly<Record<string, string | undefined>>;

/** The result of {@linkcode expandEnv}: the text, or the name of the first unset variable without default. */
export type ExpandResult = { ok: true; value: string } | { ok: false; missing: string };

const PATTERN = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}/g;

/** Expands variables in `text`. */
export function expandEnv(text: string, env: EnvSource): ExpandResult {
  if (!text.includes("$")) return { ok: true, value: text };
  let missing: string | undefined;
  const value = text.replace(PATTERN, (_whole, name: string, op: string | undefined, def: string) => {
    const current = env[name];
    if (op === ":-" && (current === undefined || current === "")) return def;
    if (op === "-" && current === undefined) return def;
    if (current === undefined) {
      missing ??= name;
      return "";
    }
    return current;
  });
  return missing === undefined ? { ok: true, value } : { ok: false, missing };
}
