/**
 * Entry point of a worker process: loads the config, builds only the stores its workers need
 * (`worker_stores.ts`; with `--cas-endpoint` the server's stores are reached over gRPC), starts every
 * `local` worker (or the one chosen by `--worker N`), and on SIGTERM/SIGINT sends GoingAway, finishes
 * running actions and exits 0. Start it with the flags of {@linkcode workerProcessCommand}.
 *
 * With `--exit-with-parent` it also watches its standard input, a pipe its parent holds open and never
 * writes to: end of file means the parent is gone (even SIGKILLed, when nothing could signal the worker),
 * so the worker kills its running actions (their bwrap sandboxes die with them) and exits, instead of
 * living on as an orphan that would reconnect to the next server on the same port.
 *
 * @example
 * ```sh
 * deno run $(permissions) src/worker/worker_process.ts --config cairn.json5 --cas-endpoint grpc://127.0.0.1:50051
 * ```
 * @module
 */
import { loadConfig } from "../config/mod.ts";
import { createStoreManager } from "../store/store_manager.ts";
import { IoThread } from "../util/io_thread.ts";
import { CairnError } from "../util/error.ts";
import { createLocalWorker, type LocalWorker } from "./local_worker.ts";
import { selectWorkers } from "./permissions.ts";
import { consoleWorkerLog } from "./worker_log.ts";
import { workerStoreSpecs } from "./worker_stores.ts";
import { forgetWorkerTokenEnv, takeInternalWorkerToken, workerTokenFromEnv } from "../auth/worker_auth.ts";

/** Parsed command line. */
export interface WorkerProcessArgs {
  readonly config: string;
  readonly worker?: number;
  readonly casEndpoint?: string;
  /** Exit when stdin reaches end of file (the parent died). */
  readonly exitWithParent?: boolean;
  /** The directory relative paths of the config are resolved against (the parent's start directory). */
  readonly baseDir?: string;
}

/** Parses `--config PATH [--worker N] [--cas-endpoint URI] [--exit-with-parent] [--base-dir DIR]`. */
export function parseWorkerArgs(args: readonly string[]): WorkerProcessArgs {
  let config: string | undefined;
  let worker: number | undefined;
  let casEndpoint: string | undefined;
  let exitWithParent = false;
  let baseDir: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [flag, inline] = a.includes("=")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    const value = () => inline ?? args[++i] ?? "";
    if (flag === "--config") config = value();
    else if (flag === "--worker") worker = Number(value());
    else if (flag === "--cas-endpoint") casEndpoint = value();
    else if (flag === "--exit-with-parent" && inline === undefined) exitWithParent = true;
    else if (flag === "--base-dir") baseDir = value();
    else {throw new Error(
        `Unknown argument "${a}"; usage: worker_process.ts --config PATH [--worker N] [--cas-endpoint URI] [--exit-with-parent] [--base-dir DIR]`,
      );}
  }
  if (!config) throw new Error("Missing --config PATH");
  if (worker !== undefined && !Number.isInteger(worker)) throw new Error("--worker takes a number");
  if (casEndpoint !== undefined && !/^grpcs?:\/\/[^/]+\/?$/.test(casEndpoint)) {
    throw new Error(`Invalid --cas-endpoint "${casEndpoint}": expected grpc://host:port`);
  }
  return {
    config,
    ...(worker === undefined ? {} : { worker }),
    ...(casEndpoint === undefined ? {} : { casEndpoint }),
    ...(exitWithParent ? { exitWithParent } : {}),
    ...(baseDir === undefined ? {} : { baseDir }),
  };
}

/** Runs the workers until a signal; resolves when they have all shut down. */
export async function runWorkerProcess(args: WorkerProcessArgs): Promise<void> {
  // The credential a parent Cairn handed over leaves the environment before anything else runs.
  const internalToken = takeInternalWorkerToken();
  const config = await loadConfig(args.config, undefined, args.baseDir ? { baseDir: args.baseDir } : {});
  const specs = selectWorkers(config, args.worker);
  if (specs.length === 0) throw new Error(`The config ${args.config} defines no workers`);
  // One I/O thread for the worker process's filesystem stores, stopped once after they closed.
  const ioThread = new IoThread();
  const stores = await createStoreManager(workerStoreSpecs(config, specs, args.casEndpoint, internalToken), {
    options: { ioThread },
  }).catch((err) => {
    ioThread.close();
    throw err;
  });
  const closeStores = () => stores.close().finally(() => ioThread.close());
  // A configured token (worker_token, else $CAIRN_WORKER_TOKEN) names the scheduler's credential; the one a
  // parent Cairn handed over is accepted by the parent's own worker API.
  const workerToken = workerTokenFromEnv() ?? internalToken;
  // Nothing an action can name (`additional_environment: from_environment`) may read a worker credential.
  forgetWorkerTokenEnv();
  const workers: LocalWorker[] = specs.map((spec, i) =>
    createLocalWorker(spec, {
      stores,
      workerToken,
      index: args.worker ?? i,
      log: consoleWorkerLog(`worker ${spec.name ?? args.worker ?? i}`),
    })
  );
  try {
    for (const w of workers) await w.start();
  } catch (err) {
    await Promise.all(workers.map((w) => w.stop()));
    await closeStores();
    throw err;
  }
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    void Promise.all(workers.map((w) => w.shutdown("worker process received a stop signal")));
  };
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  if (args.exitWithParent) void exitWhenParentDies(workers);
  try {
    await Promise.all(workers.map((w) => w.closed));
  } finally {
    Deno.removeSignalListener("SIGTERM", onSignal);
    Deno.removeSignalListener("SIGINT", onSignal);
    await closeStores();
  }
}

/** Waits for end of file on stdin, then kills running actions and exits (bounded: the parent is gone). */
async function exitWhenParentDies(workers: readonly LocalWorker[]): Promise<void> {
  try {
    for await (const _ of Deno.stdin.readable) {
      // The parent never writes; anything read is ignored.
    }
  } catch {
    // A read error means the pipe is gone too.
  }
  console.error(
    "cairn worker: the parent process is gone (stdin closed); killing running actions and exiting",
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(workers.map((w) => w.stop())).catch(() => {}),
    new Promise<void>((r) => (timer = setTimeout(r, 3000))),
  ]);
  clearTimeout(timer);
  Deno.exit(1);
}

if (import.meta.main) {
  try {
    await runWorkerProcess(parseWorkerArgs(Deno.args));
    Deno.exit(0);
  } catch (err) {
    console.error(err instanceof CairnError || err instanceof Error ? err.message : String(err));
    Deno.exit(1);
  }
}
