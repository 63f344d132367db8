/**
 * Scheduler and store metrics, under NativeLink's production-guide names (seed 000) and Cairn's own:
 * `nativelink_scheduler_queue_length`, `nativelink_worker_active_count` and
 * `nativelink_worker_execution_failures` per scheduler; `nativelink_store_size_bytes`,
 * `nativelink_store_max_bytes` and `cairn_store_entries` per store that keeps its own data (label `store`
 * is the configured name, `path` where it sits in that store's spec); and `cairn_scheduler_*` gauges.
 * Values are read from their sources at each scrape.
 *
 * @example
 * ```ts
 * import { registerOpsMetrics } from "./ops_metrics.ts";
 * const remove = registerOpsMetrics({ schedulers: () => [], stores: () => [] });
 * remove();
 * ```
 * @module
 */
import { MetricFamily } from "../util/metric_family.ts";
import { registerCollector } from "../util/metrics.ts";
import type { SchedulerSnapshot } from "../scheduler/types.ts";
import type { StoreUsageRow } from "../store/store_manager.ts";

/** Where the metrics come from. */
export interface OpsMetricsSources {
  readonly schedulers: () => readonly { readonly name: string; readonly snapshot: SchedulerSnapshot }[];
  readonly stores: () => readonly StoreUsageRow[];
}

/** Registers the collector; returns its remover. */
export function registerOpsMetrics(sources: OpsMetricsSources): () => void {
  const queue = new MetricFamily(
    "gauge",
    "nativelink_scheduler_queue_length",
    "Actions waiting for a worker.",
    ["scheduler"],
  );
  const workers = new MetricFamily(
    "gauge",
    "nativelink_worker_active_count",
    "Workers connected to the scheduler.",
    ["scheduler"],
  );
  const failures = new MetricFamily(
    "counter",
    "nativelink_worker_execution_failures",
    "Executions that failed on a worker (an error status, a lost worker or a failed attempt) since start.",
    ["scheduler"],
  );
  const executing = new MetricFamily(
    "gauge",
    "cairn_scheduler_executing_actions",
    "Actions running on a worker.",
    ["scheduler"],
  );
  const size = new MetricFamily(
    "gauge",
    "nativelink_store_size_bytes",
    "Bytes a store holds (what its eviction policy counts).",
    ["store", "path", "kind"],
  );
  const max = new MetricFamily(
    "gauge",
    "nativelink_store_max_bytes",
    "A store's eviction limit (eviction_policy.max_bytes); absent when it has none.",
    ["store", "path", "kind"],
  );
  const entries = new MetricFamily("gauge", "cairn_store_entries", "Entries a store holds.", [
    "store",
    "path",
    "kind",
  ]);
  const families = [queue, workers, failures, executing, size, max, entries];
  const remove = registerCollector(() => {
    for (const f of families) f.clear();
    for (const { name, snapshot } of sources.schedulers()) {
      let running = 0;
      for (const a of snapshot.actions) if (a.stage === "executing") running++;
      queue.set([name], snapshot.actions.length - running);
      executing.set([name], running);
      workers.set([name], snapshot.workers.length);
      failures.set([name], snapshot.executionFailures);
    }
    for (const row of sources.stores()) {
      const labels = [row.store, row.path, row.kind];
      size.set(labels, row.bytes);
      entries.set(labels, row.count);
      if (row.maxBytes > 0) max.set(labels, row.maxBytes);
    }
    return families.flatMap((f) => f.lines());
  });
  return () => void remove();
}
