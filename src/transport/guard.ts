/**
 * Defences of the transport against abusive clients: the resolved per-listener limits, the upload admission
 * counter (per connection and in total), the counters of what was refused or cut (exported to `/metrics` as
 * `cairn_transport_events_total{event=…}`), and the last-resort guard that keeps an error thrown from a
 * client's connection or stream event from ending the process.
 *
 * @example
 * ```ts
 * import { resolveLimits, UploadAdmission } from "./guard.ts";
 * const limits = resolveLimits({ socket_address: ":0", limits: { max_uploads: 10 } });
 * const admission = new UploadAdmission(limits);
 * const connection = {}; // any object standing for one connection (an HTTP/2 session)
 * const release = admission.admit(connection); // undefined past a limit
 * release?.();
 * ```
 * @module
 */
import { registerCollector } from "../util/metrics.ts";
import type { HttpListenerConfig, TransportLog } from "./types.ts";

/** Limits of one listener, in milliseconds and counts (defaults filled in). */
export interface ResolvedLimits {
  readonly maxUploadsPerConnection: number;
  readonly maxUploads: number;
  readonly uploadIdleMs: number;
  readonly headerTimeoutMs: number;
  readonly idleConnectionMs: number;
  readonly maxResetsPerSecond: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients. */
  readonly maxConcurrentStreams: number;
  /** Largest gRPC message accepted (`max_decoding_message_size`). */
  readonly maxMessageBytes: number;
}

/**
 * Defaults of the `limits` object of a listener (and of `experimental_http2_max_concurrent_streams` and
 * `max_decoding_message_size`).
 */
export const DEFAULT_LIMITS: ResolvedLimits = {
  maxUploadsPerConnection: 64,
  maxUploads: 1024,
  uploadIdleMs: 30_000,
  headerTimeoutMs: 10_000,
  idleConnectionMs: 120_000,
  maxResetsPerSecond: 200,
  maxConcurrentStreams: 256,
  maxMessageBytes: 8 * 1024 * 1024,
};

/** Fills in the defaults of a listener's limits (absent or 0 → default). */
export function resolveLimits(cfg: HttpListenerConfig): ResolvedLimits {
  const l = cfg.limits ?? {};
  const d = DEFAULT_LIMITS;
  const ms = (s: number | undefined, def: number) => (s ? Math.max(1, Math.round(s * 1000)) : def);
  return {
    maxUploadsPerConnection: l.max_uploads_per_connection || d.maxUploadsPerConnection,
    maxUploads: l.max_uploads || d.maxUploads,
    uploadIdleMs: ms(l.upload_idle_timeout_s, d.uploadIdleMs),
    headerTimeoutMs: ms(l.header_timeout_s, d.headerTimeoutMs),
    idleConnectionMs: ms(l.idle_connection_timeout_s, d.idleConnectionMs),
    maxResetsPerSecond: l.max_resets_per_second || d.maxResetsPerSecond,
    maxConcurrentStreams: cfg.advanced_http?.experimental_http2_max_concurrent_streams ||
      d.maxConcurrentStreams,
    maxMessageBytes: cfg.max_decoding_message_size || d.maxMessageBytes,
  };
}

/** Counts uploads in flight per connection and in total; refuses past either limit. */
export class UploadAdmission {
  readonly #perConnection = new WeakMap<object, number>();
  readonly #limits: ResolvedLimits;
  #total = 0;

  constructor(limits: ResolvedLimits) {
    this.#limits = limits;
  }

  /** Uploads in flight on the listener. */
  get active(): number {
    return this.#total;
  }

  /** Admits one upload on `connection`; returns its release (idempotent), or undefined past a limit. */
  admit(connection: object): (() => void) | undefined {
    const n = this.#perConnection.get(connection) ?? 0;
    if (n >= this.#limits.maxUploadsPerConnection) {
      countEvent("upload_refused_connection_limit");
      return undefined;
    }
    if (this.#total >= this.#limits.maxUploads) {
      countEvent("upload_refused_total_limit");
      return undefined;
    }
    this.#perConnection.set(connection, n + 1);
    this.#total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total--;
      this.#perConnection.set(connection, (this.#perConnection.get(connection) ?? 1) - 1);
    };
  }
}

const events = new Map<string, number>();

/** Counts one transport defence event (exported as `cairn_transport_events_total{event}`). */
export function countEvent(event: string): void {
  events.set(event, (events.get(event) ?? 0) + 1);
}

/** The count of `event` so far (tests). */
export function eventCount(event: string): number {
  return events.get(event) ?? 0;
}

registerCollector(() => {
  if (events.size === 0) return [];
  const lines = [
    "# HELP cairn_transport_events_total Client connections and streams the transport refused, cut or survived.",
    "# TYPE cairn_transport_events_total counter",
  ];
  for (const [event, n] of events) lines.push(`cairn_transport_events_total{event="${event}"} ${n}`);
  return lines;
});

/**
 * Runs a callback of a client's connection or stream event; an error it throws is counted and logged
 * (once per message) instead of escaping into the event loop.
 */
export function guarded<A extends unknown[]>(
  log: TransportLog,
  what: string,
  fn: (...args: A) => void,
): (...args: A) => void {
  return (...args: A) => {
    try {
      fn(...args);
    } catch (err) {
      survived(log, what, err);
    }
  };
}

const loggedOnce = new Set<string>();

function survived(log: TransportLog, what: string, err: unknown): void {
  countEvent("client_event_error");
  const message = `${what}: ${(err as Error)?.message ?? String(err)}`;
  if (loggedOnce.has(message) || loggedOnce.size > 100) return;
  loggedOnce.add(message);
  log.warn(`Transport survived an error from a client event (${message}); further ones are counted only`);
}

/** Error codes of Node's http2/net/stream layers: a client's misbehaviour or departure, never Cairn's state. */
function isClientEventError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return false;
  return code.startsWith("ERR_HTTP2_") || code.startsWith("ERR_STREAM_") ||
    ["ECONNRESET", "EPIPE", "ECANCELED", "ERR_SOCKET_CLOSED", "ENOTCONN", "ETIMEDOUT"].includes(code);
}

let installed = false;

/**
 * Installs, once per process, the last-resort guard: an uncaught error or rejection that comes from a
 * client's connection or stream (Node http2/stream/socket error codes) is logged once and counted instead of
 * ending the process. Every other uncaught error still ends it.
 */
export function installClientErrorGuard(log: TransportLog): void {
  if (installed) return;
  installed = true;
  globalThis.addEventListener("error", (e: ErrorEvent) => {
    if (isClientEventError(e.error)) {
      e.preventDefault();
      survived(log, "uncaught", e.error);
    }
  });
  globalThis.addEventListener("unhandledrejection", (e: PromiseRejectionEvent) => {
    if (isClientEventError(e.reason)) {
      e.preventDefault();
      survived(log, "unhandled rejection", e.reason);
    }
  });
}
