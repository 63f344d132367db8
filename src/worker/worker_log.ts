/**
 * The worker's logger seam: three levels of plain messages. The default writes to stderr with a prefix.
 *
 * @example
 * ```ts
 * import { consoleWorkerLog } from "./worker_log.ts";
 * const log = consoleWorkerLog("worker 0");
 * log.info("Connected to grpc://127.0.0.1:50061");
 * ```
 * @module
 */

/** Where the worker reports what it does. */
export interface WorkerLog {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** A logger writing `[prefix] message` lines to the console. */
export function consoleWorkerLog(prefix: string): WorkerLog {
  return {
    info: (m) => console.error(`[${prefix}] ${m}`),
    warn: (m) => console.error(`[${prefix}] warning: ${m}`),
    error: (m) => console.error(`[${prefix}] error: ${m}`),
  };
}

/** A logger that drops everything (tests). */
export const silentWorkerLog: WorkerLog = { info() {}, warn() {}, error() {} };
