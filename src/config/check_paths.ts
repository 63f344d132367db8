/**
 * The start-time check of every path in a config, run before any port is bound or worker spawned: each
 * directory Cairn writes (store `content_path`/`temp_path`, worker `work_directory`, ...) is created when
 * missing and must be writable; each file Cairn reads (TLS certificates, keys, CAs) must exist and be
 * readable. The first problem is one {@linkcode ConfigError} naming the field's JSON path.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./load_config.ts";
 * import { checkConfigPaths } from "./check_paths.ts";
 * const config = await loadConfig("config/local.json5");
 * await checkConfigPaths(config); // throws "config/local.json5: workers[0].local.work_directory: ..."
 * ```
 * @module
 */
import { join } from "node:path";
import { ConfigError } from "./config_error.ts";
import { configPathFields, configSource } from "./load_config.ts";
import type { CairnConfig } from "./types.ts";

function reason(err: unknown): string {
  if (err instanceof Deno.errors.NotFound) return "no such file or directory";
  if (err instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (err instanceof Deno.errors.NotADirectory) return "a parent is not a directory";
  if (err instanceof Deno.errors.AlreadyExists) return "exists and is not a directory";
  const m = err instanceof Error ? err.message : String(err);
  return m.replace(/\s*\(os error \d+\)/, "").replace(/, (mkdir|open|stat) '.*$/, "");
}

/** Creates and write-tests every `dir` path, read-tests every `file` path. Throws {@linkcode ConfigError}. */
export async function checkConfigPaths(config: CairnConfig): Promise<void> {
  const source = configSource(config) ?? "config";
  const checkedDirs = new Set<string>();
  for (const field of configPathFields(config)) {
    const fail = (problem: string, cause: unknown): never => {
      throw new ConfigError(source, field.path, `${problem} ${field.value}: ${reason(cause)}`, { cause });
    };
    if (field.role === "dir") {
      if (checkedDirs.has(field.value)) continue;
      checkedDirs.add(field.value);
      try {
        await Deno.mkdir(field.value, { recursive: true });
      } catch (err) {
        fail("cannot create directory", err);
      }
      const probe = join(field.value, `.cairn-write-check-${Deno.pid}-${crypto.randomUUID()}`);
      try {
        await Deno.writeFile(probe, new Uint8Array(0), { createNew: true });
      } catch (err) {
        fail("cannot write in directory", err);
      }
      await Deno.remove(probe).catch(() => {});
    } else if (field.role === "file") {
      try {
        const file = await Deno.open(field.value, { read: true });
        const info = await file.stat();
        file.close();
        if (!info.isFile) fail("cannot read file", new Error("not a regular file"));
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        fail("cannot read file", err);
      }
    }
  }
}
