/**
 * The live status page: `GET /` serves a plain HTML page (its script and style under `/_status/`) that
 * shows connected workers with their platform properties, running and queued actions with their age and
 * worker, recently finished actions, cache hit ratios, request rates as small charts, store sizes against
 * their eviction limits, recent failures and long work in progress (the filesystem index rebuild).
 * `GET /api/status` answers the same document as JSON, and `GET /api/status/events` streams it as
 * server-sent events every two seconds. Everything is read-only: any other method is 405.
 *
 * @example
 * ```ts
 * import { createStatusPage } from "./status_page.ts";
 * const page = createStatusPage({ schedulers: () => [], stores: () => [] });
 * const res = await page.route(new Request("http://x/api/status"));
 * console.log(res?.status); // 200
 * page.close();
 * ```
 * @module
 */
import type { HttpRoute } from "../transport/types.ts";
import { requestTotals } from "../transport/grpc_stats.ts";
import type { SchedulerSnapshot } from "../scheduler/types.ts";
import { acHitRate, casHitRates } from "./cache_metrics.ts";
import { currentProgress, type Progress } from "../util/progress.ts";
import { VERSION } from "../version.ts";

/** One store that holds its own data, with its usage. */
export interface StoreRow {
  /** The configured store name and, for nested stores, the path inside it (`CAS › backend`). */
  readonly name: string;
  readonly kind: string;
  readonly bytes: number;
  readonly maxBytes: number;
  readonly count: number;
}

/** What the page shows, read at each update. */
export interface StatusSources {
  /** Every scheduler of this process, by name. */
  readonly schedulers: () => readonly { readonly name: string; readonly snapshot: SchedulerSnapshot }[];
  /** Stores that hold data in this process. */
  readonly stores: () => readonly StoreRow[];
}

/** Options of {@linkcode createStatusPage}. */
export interface StatusPageOptions extends StatusSources {
  /** Live streams end when this aborts (server shutdown). */
  readonly signal?: AbortSignal;
  /** Seconds between two live updates (default 2). */
  readonly intervalSeconds?: number;
}

/** One point of the rate charts (per-second rates over the sample interval). */
export interface RatePoint {
  readonly t: number;
  readonly calls: number;
  readonly errors: number;
  readonly running: number;
  readonly queued: number;
}

/** The JSON document of `/api/status`. */
export interface StatusDocument {
  readonly version: string;
  readonly uptimeSeconds: number;
  readonly now: number;
  readonly workers: readonly {
    id: string;
    scheduler: string;
    properties: Record<string, string[]>;
    running: number;
    maxInflight: number;
    lastSeenMsAgo: number;
  }[];
  readonly actions: readonly {
    id: string;
    scheduler: string;
    digest: string;
    stage: string;
    ageMs: number;
    worker: string | null;
    attempts: number;
  }[];
  readonly finished: readonly {
    digest: string;
    scheduler: string;
    worker: string | null;
    exitCode: number | null;
    error: string | null;
    tookMs: number;
    endedAt: number;
  }[];
  readonly failures: readonly {
    at: number;
    scheduler: string;
    digest: string;
    worker: string | null;
    error: string;
  }[];
  readonly stores: readonly StoreRow[];
  readonly casHitRate: number | null;
  readonly acHitRate: number | null;
  readonly rates: readonly RatePoint[];
  readonly progress: readonly Progress[];
}

/** A running status page. */
export interface StatusPage {
  readonly route: HttpRoute;
  /** The current document. */
  document(): StatusDocument;
  /** Stops the rate sampler and ends live streams. */
  close(): void;
}

const ASSETS: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/_status/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/_status/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};
const API = "/api/status";
const EVENTS = "/api/status/events";
/** Rate samples: one every 5 s, ten minutes kept. */
const SAMPLE_MS = 5000;
const SAMPLES = 120;
/** Most rows of each list sent to the page. */
const MAX_ROWS = 200;

const started = Date.now();
const assetCache = new Map<string, string>();

function asset(file: string): string {
  let text = assetCache.get(file);
  if (text === undefined) {
    text = Deno.readTextFileSync(new URL(`./status_page/${file}`, import.meta.url));
    assetCache.set(file, text);
  }
  return text;
}

/** Builds the page over `sources`. */
export function createStatusPage(options: StatusPageOptions): StatusPage {
  const rates: RatePoint[] = [];
  let previous = requestTotals();
  let previousAt = Date.now();
  const streams = new Set<() => void>();

  const counts = () => {
    let running = 0;
    let queued = 0;
    for (const { snapshot } of options.schedulers()) {
      for (const a of snapshot.actions) {
        if (a.stage === "executing") running++;
        else queued++;
      }
    }
    return { running, queued };
  };
  const sample = () => {
    const now = Date.now();
    const totals = requestTotals();
    const secs = Math.max(0.001, (now - previousAt) / 1000);
    rates.push({
      t: now,
      calls: (totals.calls - previous.calls) / secs,
      errors: (totals.errors - previous.errors) / secs,
      ...counts(),
    });
    if (rates.length > SAMPLES) rates.shift();
    previous = totals;
    previousAt = now;
  };
  const sampler = setInterval(() => {
    try {
      sample();
    } catch { /* a failing source must not stop the sampler */ }
  }, SAMPLE_MS);
  Deno.unrefTimer(sampler);

  const document = (): StatusDocument => {
    const now = Date.now();
    const workers: StatusDocument["workers"][number][] = [];
    const actions: StatusDocument["actions"][number][] = [];
    const finished: StatusDocument["finished"][number][] = [];
    const failures: StatusDocument["failures"][number][] = [];
    for (const { name, snapshot } of options.schedulers()) {
      for (const w of snapshot.workers) {
        workers.push({
          id: w.id,
          scheduler: name,
          properties: w.properties,
          running: w.running,
          maxInflight: w.maxInflight,
          lastSeenMsAgo: now - w.lastSeen,
        });
      }
      for (const a of snapshot.actions) {
        actions.push({
          id: a.id,
          scheduler: name,
          digest: a.digest,
          stage: a.stage,
          ageMs: now - a.queuedAt,
          worker: a.worker ?? null,
          attempts: a.attempts,
        });
      }
      for (const f of snapshot.finished) {
        finished.push({
          digest: f.digest,
          scheduler: name,
          worker: f.worker ?? null,
          exitCode: f.exitCode ?? null,
          error: f.error ?? null,
          tookMs: f.endedAt - f.queuedAt,
          endedAt: f.endedAt,
        });
      }
      for (const f of snapshot.failures) {
        failures.push({
          at: f.at,
          scheduler: name,
          digest: f.digest,
          worker: f.worker ?? null,
          error: f.error,
        });
      }
    }
    actions.sort((a, b) => b.ageMs - a.ageMs);
    finished.sort((a, b) => b.endedAt - a.endedAt);
    failures.sort((a, b) => b.at - a.at);
    const hit = casHitRates(now);
    let casHitRate: number | null = null;
    if (hit.size > 0) {
      // The busiest picture: the mean of the instances' ratios.
      casHitRate = [...hit.values()].reduce((a, b) => a + b, 0) / hit.size;
    }
    return {
      version: VERSION,
      uptimeSeconds: (now - started) / 1000,
      now,
      workers: workers.slice(0, MAX_ROWS),
      actions: actions.slice(0, MAX_ROWS),
      finished: finished.slice(0, 20),
      failures: failures.slice(0, 20),
      stores: options.stores().slice(0, MAX_ROWS),
      casHitRate,
      acHitRate: acHitRate(now) ?? null,
      rates: [...rates],
      progress: currentProgress(),
    };
  };

  const interval = (options.intervalSeconds ?? 2) * 1000;
  const events = (): Response => {
    const encoder = new TextEncoder();
    let timer: ReturnType<typeof setInterval> | undefined;
    let stop = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const send = () => {
          try {
            controller.enqueue(encoder.encode(`event: status\ndata: ${JSON.stringify(document())}\n\n`));
          } catch {
            stop();
          }
        };
        stop = () => {
          clearInterval(timer);
          streams.delete(stop);
          try {
            controller.close();
          } catch { /* already closed */ }
        };
        streams.add(stop);
        send();
        timer = setInterval(send, interval);
      },
      cancel() {
        clearInterval(timer);
        streams.delete(stop);
      },
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      },
    });
  };
  options.signal?.addEventListener("abort", () => {
    for (const stop of [...streams]) stop();
  }, { once: true });

  const route: HttpRoute = (request) => {
    const path = new URL(request.url).pathname;
    const known = path === API || path === EVENTS || path in ASSETS;
    if (!known) return undefined;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("The status page is read-only: use GET\n", {
        status: 405,
        headers: { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" },
      });
    }
    if (path === EVENTS) return events();
    const headers = {
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "content-security-policy":
        "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:",
      "x-frame-options": "DENY",
    };
    if (path === API) {
      const body = request.method === "HEAD" ? null : JSON.stringify(document());
      return new Response(body, { headers: { ...headers, "content-type": "application/json" } });
    }
    const a = ASSETS[path]!;
    return new Response(request.method === "HEAD" ? null : asset(a.file), {
      headers: { ...headers, "content-type": a.type },
    });
  };

  return {
    route,
    document,
    close() {
      clearInterval(sampler);
      for (const stop of [...streams]) stop();
    },
  };
}
