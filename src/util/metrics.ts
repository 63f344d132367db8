/**
 * Prometheus metrics in the text exposition format, without a client library: components register a
 * collector (a function returning exposition lines) and `/metrics` renders them all.
 *
 * @example
 * ```ts
 * import { Histogram, registerCollector, renderMetrics } from "./metrics.ts";
 * const h = new Histogram();
 * h.observe(0.004);
 * registerCollector(() => h.lines("cairn_example_seconds", 'op="x"'));
 * console.log(renderMetrics());
 * ```
 * @module
 */

/** Default latency buckets in seconds (100 µs … 60 s: cache hits are answered in well under 1 ms). */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

/** A cumulative histogram (Prometheus semantics: `le` buckets, `_sum`, `_count`). */
export class Histogram {
  readonly #bounds: readonly number[];
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(bounds: readonly number[] = LATENCY_BUCKETS) {
    this.#bounds = bounds;
    this.#counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    this.#sum += value;
    this.#count++;
    const b = this.#bounds;
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]!) {
        this.#counts[i]!++;
        return;
      }
    }
  }

  get count(): number {
    return this.#count;
  }

  /** Exposition lines for this histogram under `name` with extra `labels` (`a="b",c="d"`, may be empty). */
  lines(name: string, labels: string): string[] {
    const sep = labels ? "," : "";
    const out: string[] = [];
    let cumulative = 0;
    this.#bounds.forEach((le, i) => {
      cumulative += this.#counts[i]!;
      out.push(`${name}_bucket{${labels}${sep}le="${le}"} ${cumulative}`);
    });
    out.push(`${name}_bucket{${labels}${sep}le="+Inf"} ${this.#count}`);
    out.push(`${name}_sum${labels ? `{${labels}}` : ""} ${this.#sum}`);
    out.push(`${name}_count${labels ? `{${labels}}` : ""} ${this.#count}`);
    return out;
  }
}

/** Escapes a label value. */
export function labelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** A source of exposition lines (including its own `# HELP` / `# TYPE`). */
export type Collector = () => string[];

const collectors = new Set<Collector>();

/** Adds a collector; returns a function that removes it. */
export function registerCollector(collector: Collector): () => void {
  collectors.add(collector);
  return () => collectors.delete(collector);
}

/** Every registered collector's lines, as one exposition document. */
export function renderMetrics(): string {
  const lines: string[] = [];
  for (const c of collectors) {
    try {
      lines.push(...c());
    } catch {
      // A failing collector must not take the others down.
    }
  }
  return lines.join("\n") + "\n";
}

const started = Date.now();
registerCollector(() => {
  const mem = Deno.memoryUsage();
  return [
    "# HELP process_resident_memory_bytes Resident set size.",
    "# TYPE process_resident_memory_bytes gauge",
    `process_resident_memory_bytes ${mem.rss}`,
    "# HELP cairn_heap_used_bytes JavaScript heap in use.",
    "# TYPE cairn_heap_used_bytes gauge",
    `cairn_heap_used_bytes ${mem.heapUsed}`,
    "# HELP cairn_heap_total_bytes JavaScript heap reserved by V8.",
    "# TYPE cairn_heap_total_bytes gauge",
    `cairn_heap_total_bytes ${mem.heapTotal}`,
    "# HELP cairn_external_memory_bytes Memory outside the JavaScript heap held by JavaScript objects (buffers).",
    "# TYPE cairn_external_memory_bytes gauge",
    `cairn_external_memory_bytes ${mem.external}`,
    "# HELP cairn_uptime_seconds Seconds since the process started.",
    "# TYPE cairn_uptime_seconds gauge",
    `cairn_uptime_seconds ${(Date.now() - started) / 1000}`,
  ];
});
