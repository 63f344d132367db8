/**
 * Cache hit metrics under the names NativeLink's production guide (seed 000) alerts on:
 * `nativelink_cas_requests` and `nativelink_cas_hits` (counters of blobs looked up and found, per instance
 * and method, so `rate(nativelink_cas_hits[5m]) / rate(nativelink_cas_requests[5m])` is the CAS hit ratio),
 * `nativelink_cas_hit_rate` (a gauge: that ratio over the last five minutes, per instance), and the action
 * cache's `nativelink_ac_requests` / `nativelink_ac_hits`.
 *
 * What counts as a CAS request: every digest of FindMissingBlobs and BatchReadBlobs, every ByteStream Read
 * and every GetTree root. A hit is a digest that was found.
 *
 * @example
 * ```ts
 * import { recordCasLookups } from "./cache_metrics.ts";
 * recordCasLookups("main", "FindMissingBlobs", 10, 7); // 10 digests asked, 7 present
 * ```
 * @module
 */
import { MetricFamily } from "../util/metric_family.ts";
import { registerCollector } from "../util/metrics.ts";

const LABELS = ["instance_name", "method"] as const;

const casRequests = new MetricFamily(
  "counter",
  "nativelink_cas_requests",
  "CAS blobs looked up (FindMissingBlobs and BatchReadBlobs digests, ByteStream reads, GetTree roots).",
  LABELS,
);
const casHits = new MetricFamily("counter", "nativelink_cas_hits", "CAS blobs looked up and found.", LABELS);
const acRequests = new MetricFamily(
  "counter",
  "nativelink_ac_requests",
  "Action cache lookups (GetActionResult).",
  ["instance_name"],
);
const acHits = new MetricFamily("counter", "nativelink_ac_hits", "Action cache lookups that hit.", [
  "instance_name",
]);
const hitRate = new MetricFamily(
  "gauge",
  "nativelink_cas_hit_rate",
  "CAS hits / CAS requests over the last five minutes (absent until the first request).",
  ["instance_name"],
);

/** The sliding window of {@linkcode hitRate}: 30 buckets of 10 s. */
const BUCKET_MS = 10_000;
const BUCKETS = 30;

class Window {
  readonly #hits = new Float64Array(BUCKETS);
  readonly #requests = new Float64Array(BUCKETS);
  readonly #stamp = new Float64Array(BUCKETS);

  add(now: number, requests: number, hits: number): void {
    const slot = Math.floor(now / BUCKET_MS);
    const i = slot % BUCKETS;
    if (this.#stamp[i] !== slot) {
      this.#stamp[i] = slot;
      this.#hits[i] = 0;
      this.#requests[i] = 0;
    }
    this.#hits[i]! += hits;
    this.#requests[i]! += requests;
  }

  ratio(now: number): number | undefined {
    const oldest = Math.floor(now / BUCKET_MS) - BUCKETS + 1;
    let h = 0;
    let r = 0;
    for (let i = 0; i < BUCKETS; i++) {
      if (this.#stamp[i]! < oldest) continue;
      h += this.#hits[i]!;
      r += this.#requests[i]!;
    }
    return r > 0 ? h / r : undefined;
  }
}

/** The action cache's hit window, all instances together. */
const acWindow = new Window();

/** Windows per instance name, capped like the families (client-chosen names). */
const windows = new Map<string, Window>();
const MAX_WINDOWS = 256;

/** Records `requested` CAS lookups of `method` on `instance`, `found` of which were present. */
export function recordCasLookups(instance: string, method: string, requested: number, found: number): void {
  if (requested <= 0) return;
  const labels = [instance, method];
  casRequests.inc(labels, requested);
  casHits.inc(labels, found);
  let w = windows.get(instance);
  if (w === undefined && windows.size < MAX_WINDOWS) windows.set(instance, w = new Window());
  w?.add(Date.now(), requested, found);
}

/** Records one GetActionResult on `instance`. */
export function recordAcLookup(instance: string, hit: boolean): void {
  acRequests.inc([instance]);
  acHits.inc([instance], hit ? 1 : 0);
  acWindow.add(Date.now(), 1, hit ? 1 : 0);
}

/** The action cache's hit ratio over the last five minutes, or undefined before any lookup. */
export function acHitRate(now = Date.now()): number | undefined {
  return acWindow.ratio(now);
}

/** The CAS hit ratio of `instance` over the last five minutes, or undefined before any request. */
export function casHitRate(instance: string, now = Date.now()): number | undefined {
  return windows.get(instance)?.ratio(now);
}

/** Hit ratios of every instance seen (for the status page). */
export function casHitRates(now = Date.now()): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, w] of windows) {
    const r = w.ratio(now);
    if (r !== undefined) out.set(name, r);
  }
  return out;
}

casRequests.register();
casHits.register();
acRequests.register();
acHits.register();
// The gauge is rebuilt from the windows on each scrape.
registerCollector(() => {
  hitRate.clear();
  for (const [name, r] of casHitRates()) hitRate.set([name], r);
  return hitRate.lines();
});
