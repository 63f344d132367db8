/**
 * The Deno permissions a worker process needs, derived from its config, so the parent can spawn it with
 * nothing more: read/write of its `work_directory` and of the `filesystem` stores it builds itself,
 * read of the config file, the project's source and the binaries it checks; run of bwrap (or setsid for
 * `sandbox: "none"`), xargs (input symlinks), `query_cmd` programs and the precondition script; net to the scheduler and to every
 * `grpc` store endpoint (including `--cas-endpoint`); the environment (for `${VAR}` expansion); sys
 * `uid` (to know whether it must drop root in the sandbox).
 *
 * @example
 * ```ts ignore
 * import { workerDenoPermissions, workerProcessCommand } from "./permissions.ts";
 * const flags = workerDenoPermissions(config, "/etc/cairn.json5", { casEndpoint: "grpc://127.0.0.1:50051" });
 * const argv = workerProcessCommand(config, "/etc/cairn.json5", { casEndpoint: "grpc://127.0.0.1:50051" });
 * // ["deno", "run", "--allow-read=…", …, "/…/src/worker/worker_process.ts", "--config", "/etc/cairn.json5", …]
 * ```
 * @module
 */
import { configBaseDir } from "../config/load_config.ts";
import type { CairnConfig } from "../config/types.ts";
import type { LocalWorkerSpec } from "./local_worker_spec.ts";
import { XARGS } from "./materialize_inputs.ts";
import { DEFAULT_SANDBOX_PATHS, PRLIMIT } from "./sandbox.ts";
import { workerStoreSpecs } from "./worker_stores.ts";

/** Options shared by {@linkcode workerDenoPermissions} and {@linkcode workerProcessCommand}. */
export interface WorkerProcessOptions {
  /** Only this entry of `workers` (default: all). */
  readonly workerIndex?: number;
  /** The parent's CAS/AC gRPC endpoint (see `worker_stores.ts`). */
  readonly casEndpoint?: string;
  /**
   * The worker exits when its standard input reaches end of file (`--exit-with-parent`): the parent keeps
   * the pipe open, so the worker dies with its parent even when the parent is SIGKILLed.
   */
  readonly exitWithParent?: boolean;
}

/** The project root (holds `src/`, `deno.json`, `node_modules/`). */
export const PROJECT_DIR: string = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

/** Deno permission flags for a worker process running `config`'s workers. */
export function workerDenoPermissions(
  config: CairnConfig,
  configPath: string,
  options: WorkerProcessOptions = {},
): string[] {
  const workers = selectWorkers(config, options.workerIndex);
  const read = new Set<string>([configPath, PROJECT_DIR]);
  const write = new Set<string>();
  const run = new Set<string>([XARGS]);
  const net = new Set<string>();
  for (const w of workers) {
    read.add(w.work_directory);
    write.add(w.work_directory);
    net.add(hostPort(w.worker_api_endpoint.uri));
    if ((w.sandbox ?? "bwrap") === "bwrap") {
      for (const p of ["/usr/bin/bwrap", "/usr/bin/setpriv", ...(w.sandbox_paths ?? DEFAULT_SANDBOX_PATHS)]) {
        read.add(p);
      }
      run.add("/usr/bin/bwrap");
    } else {
      read.add("/usr/bin/setsid");
    }
    // The action's rlimits are set by prlimit (checked at start).
    read.add(PRLIMIT);
    // Actions run in their own process group (setsid), killed as a group with the kill program.
    run.add("/usr/bin/setsid");
    run.add("/usr/bin/kill");
    read.add("/usr/bin/setsid");
    for (const source of Object.values(w.platform_properties ?? {})) {
      if ("query_cmd" in source) run.add(source.query_cmd.trim().split(/\s+/)[0]!);
    }
    if (w.experimental_precondition_script) {
      run.add(w.experimental_precondition_script.trim().split(/\s+/)[0]!);
    }
    const tls = w.worker_api_endpoint.tls_config as Record<string, unknown> | undefined;
    for (const f of ["ca_file", "cert_file", "key_file"]) {
      if (typeof tls?.[f] === "string") read.add(tls[f] as string);
    }
  }
  walkSpecs(workerStoreSpecs(config, workers, options.casEndpoint), (kind, body) => {
    if (kind === "filesystem") {
      for (const f of ["content_path", "temp_path"]) {
        if (typeof body[f] === "string") {
          read.add(body[f] as string);
          write.add(body[f] as string);
        }
      }
    } else if (kind === "grpc") {
      for (
        const e of (body["endpoints"] as { address?: string; tls_config?: Record<string, unknown> }[]) ?? []
      ) {
        if (e.address) net.add(hostPort(e.address));
        for (const f of ["ca_file", "cert_file", "key_file"]) {
          if (typeof e.tls_config?.[f] === "string") read.add(e.tls_config[f] as string);
        }
      }
    }
  });
  const flag = (name: string, values: Set<string>) =>
    values.size ? [`--${name}=${[...values].join(",")}`] : [];
  return [
    ...flag("allow-read", read),
    ...flag("allow-write", write),
    ...flag("allow-run", run),
    ...flag("allow-net", net),
    // Whole environment: the config loader expands `${VAR}` against all of it (as the parent does), and
    // lz4-napi reads NAPI_RS_* variables. Actions never inherit it: the sandbox starts from an empty env.
    "--allow-env",
    `--allow-ffi=${PROJECT_DIR}/node_modules`,
    // uid: whether to drop root in the sandbox; systemMemoryInfo: the default of limits.max_memory_bytes.
    "--allow-sys=uid,systemMemoryInfo",
  ];
}

/** The full command line that starts a worker process (`deno run <permissions> worker_process.ts …`). */
export function workerProcessCommand(
  config: CairnConfig,
  configPath: string,
  options: WorkerProcessOptions = {},
): string[] {
  return [
    Deno.execPath(),
    "run",
    "--no-prompt",
    `--config=${PROJECT_DIR}/deno.json`,
    ...workerDenoPermissions(config, configPath, options),
    `${PROJECT_DIR}/src/worker/worker_process.ts`,
    "--config",
    configPath,
    ...(options.workerIndex === undefined ? [] : ["--worker", String(options.workerIndex)]),
    ...(options.casEndpoint ? ["--cas-endpoint", options.casEndpoint] : []),
    ...(options.exitWithParent ? ["--exit-with-parent"] : []),
    // Relative paths of the config mean the same directories as in the parent, whatever the child's cwd.
    "--base-dir",
    configBaseDir(config) ?? Deno.cwd(),
  ];
}

/** The `local` workers of the config, or just entry `index`. */
export function selectWorkers(config: CairnConfig, index?: number): LocalWorkerSpec[] {
  const all = config.workers.map((w) => w.local as LocalWorkerSpec);
  if (index === undefined) return all;
  const one = all[index];
  if (!one) throw new Error(`Cannot start worker ${index}: the config has ${all.length} worker(s)`);
  return [one];
}

function hostPort(uri: string): string {
  return uri.replace(/^[a-z]+:\/\//, "").replace(/\/.*$/, "");
}

function walkSpecs(v: unknown, visit: (kind: string, body: Record<string, unknown>) => void): void {
  if (Array.isArray(v)) return v.forEach((x) => walkSpecs(x, visit));
  if (v === null || typeof v !== "object") return;
  for (const [k, x] of Object.entries(v)) {
    if (x && typeof x === "object" && !Array.isArray(x)) visit(k, x as Record<string, unknown>);
    walkSpecs(x, visit);
  }
}
