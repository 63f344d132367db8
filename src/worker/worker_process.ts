/**
 * Entry point of a worker process: loads the config, builds only the stores its workers need
 * (`worker_stores.ts`; with `--cas-endpoint` the server's stores are reached over gRPC), starts every
 * `local` worker (or the one chosen by `--worker N`), and on SIGTERM/SIGINT sends GoingAway, finishes
 * running actions and exits 0. Start it with the flags of {@linkcode workerProcessCommand}.
 *
 * @example
 * ```sh
 * deno run $(permissions) src/worker/worker_process.ts --config cairn.json5 --cas-endpoint grpc://127.0.0.1:50051
 * ```
 * @module
 */
import { loadConfig } from "../config/mod.ts";
import { createStoreManager } from "../store/store_manager.ts";
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
}

/** Parses `--config PATH [--worker N] [--cas-endpoint URI]`. */
export function parseWorkerArgs(args: readonly string[]): WorkerProcessArgs {
  let config: string | undefined;
  let worker: number | undefined;
  let casEndpoint: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [flag, inline] = a.includes("=")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    const value = () => inline ?? args[++i] ?? "";
    if (flag === "--config") config = value();
    else if (flag === "--worker") worker = Number(value());
    else if (flag === "--cas-endpoint") casEndpoint = value();
    else {throw new Error(
        `Unknown argument "${a}"; usage: worker_process.ts --config PATH [--worker N] [--cas-endpoint URI]`,
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
  };
}

/** Runs the workers until a signal; resolves when they have all shut down. */
export async function runWorkerProcess(args: WorkerProcessArgs): Promise<void> {
  // The credential a parent Cairn handed over leaves the environment before anything else runs.
  const internalToken = takeInternalWorkerToken();
  const config = await loadConfig(args.config);
  const specs = selectWorkers(config, args.worker);
  if (specs.length === 0) throw new Error(`The config ${args.config} defines no workers`);
  const stores = await createStoreManager(workerStoreSpecs(config, specs, args.casEndpoint, internalToken));
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
    await stores.close();
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
  try {
    await Promise.all(workers.map((w) => w.closed));
  } finally {
    Deno.removeSignalListener("SIGTERM", onSignal);
    Deno.removeSignalListener("SIGINT", onSignal);
    await stores.close();
  }
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
