/**
 * Runs each local worker of a config in its own Deno process with permissions derived from its config, and
 * restarts a worker that dies unexpectedly (with back-off). Stopping sends SIGTERM (the worker drains:
 * running actions finish, then it exits) and SIGKILL after a grace period. Each worker's stdin is a pipe this
 * process holds open and never writes to; when this process dies however it dies (SIGKILL included), the
 * pipe closes and the worker kills its actions and exits (`--exit-with-parent`), so no orphan outlives it.
 *
 * @example
 * ```ts ignore
 * const sup = startWorkerProcesses(config, "config/local.json5", { casEndpoint: "grpc://127.0.0.1:50051" });
 * await sup.stop();
 * ```
 * @module
 */
import type { CairnConfig } from "./config/types.ts";
import { workerProcessCommand } from "./worker/mod.ts";
import { INTERNAL_WORKER_TOKEN_ENV } from "./auth/worker_auth.ts";

/** Options of {@linkcode startWorkerProcesses}. */
export interface WorkerProcessesOptions {
  /** The CAS/AC endpoint of this process's server, for stores the workers share with it. */
  readonly casEndpoint?: string | undefined;
  readonly log?: (line: string) => void;
  /** How long a draining worker may take before SIGKILL (ms, default 30 s). */
  readonly graceMs?: number;
  /**
   * The credential the workers present to this process's worker API and servers; handed over in the
   * child's environment (`CAIRN_INTERNAL_WORKER_TOKEN`), never on its command line.
   */
  readonly workerToken?: string | undefined;
}

/** The running worker processes. */
export interface WorkerProcesses {
  readonly pids: () => number[];
  stop(): Promise<void>;
}

/** Spawns one process per `workers[i]` of the config. */
export function startWorkerProcesses(
  config: CairnConfig,
  configPath: string,
  options: WorkerProcessesOptions = {},
): WorkerProcesses {
  const log = options.log ?? ((l: string) => console.log(l));
  const graceMs = options.graceMs ?? 30_000;
  let stopping = false;
  const children = new Map<number, Deno.ChildProcess>();
  const exits = new Map<number, Promise<Deno.CommandStatus>>();

  const spawn = (index: number, attempt: number) => {
    const [program, ...args] = workerProcessCommand(config, configPath, {
      workerIndex: index,
      ...(options.casEndpoint ? { casEndpoint: options.casEndpoint } : {}),
      exitWithParent: true,
    });
    const child = new Deno.Command(program!, {
      args,
      // A pipe the worker watches: its end of file means this process died (`--exit-with-parent`).
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
      ...(options.workerToken ? { env: { [INTERNAL_WORKER_TOKEN_ENV]: options.workerToken } } : {}),
    }).spawn();
    children.set(index, child);
    log(`cairn: worker ${index} started (pid ${child.pid})`);
    const status = child.status;
    exits.set(index, status);
    status.then((s) => {
      // Our end of the worker's lifeline pipe, kept open (never written) while the worker runs.
      child.stdin.close().catch(() => {});
      if (stopping) return;
      const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
      log(
        `cairn: worker ${index} exited (code ${s.code}${
          s.signal ? `, ${s.signal}` : ""
        }); restarting in ${delay} ms`,
      );
      setTimeout(() => {
        if (!stopping) spawn(index, s.success ? 0 : attempt + 1);
      }, delay);
    });
  };
  config.workers.forEach((_, i) => spawn(i, 0));

  return {
    pids: () => [...children.values()].map((c) => c.pid),
    async stop() {
      stopping = true;
      await Promise.all([...children.entries()].map(async ([index, child]) => {
        try {
          child.kill("SIGTERM");
        } catch { /* already gone */ }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const killed = new Promise<void>((r) => {
          timer = setTimeout(() => {
            try {
              child.kill("SIGKILL");
            } catch { /* already gone */ }
            r();
          }, graceMs);
        });
        await Promise.race([exits.get(index), killed]);
        await exits.get(index);
        clearTimeout(timer);
      }));
    },
  };
}
