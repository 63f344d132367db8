/**
 * Labelled Prometheus metric families (counter, gauge, histogram) with a cap on how many label sets one
 * family holds. Label values often come from clients (instance names, method paths); past the cap, new
 * label sets are counted under one series whose every label is `"__other__"`, so 10,000 bogus instance
 * names make one extra series, not 10,000.
 *
 * @example
 * ```ts
 * import { MetricFamily } from "./metric_family.ts";
 * import { renderMetrics } from "./metrics.ts";
 * const hits = new MetricFamily("counter", "example_hits", "Lookups that found the blob.", ["instance"]);
 * hits.inc([""]);
 * hits.register();
 * console.log(renderMetrics().includes('example_hits{instance=""} 1'));
 * ```
 * @module
 */
import { Histogram, labelValue, LATENCY_BUCKETS, registerCollector } from "./metrics.ts";

/** The label value a family uses for every label set past its cap. */
export const OVERFLOW_LABEL = "__other__";

/** Default cap on label sets per family. */
export const DEFAULT_MAX_SERIES = 256;

/** Prometheus metric types this module renders. */
export type MetricType = "counter" | "gauge" | "histogram";

/** Options of {@linkcode MetricFamily}. */
export interface MetricFamilyOptions {
  /** Most label sets kept (default {@linkcode DEFAULT_MAX_SERIES}); the rest share one overflow series. */
  readonly maxSeries?: number;
  /** Histogram buckets (default: latency buckets, 100 µs … 60 s). */
  readonly buckets?: readonly number[];
}

interface Series {
  readonly labels: string;
  value: number;
  histogram?: Histogram;
}

/** One metric name with its label sets. */
export class MetricFamily {
  readonly type: MetricType;
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly #maxSeries: number;
  readonly #buckets: readonly number[];
  readonly #series = new Map<string, Series>();
  #overflow: Series | undefined;

  constructor(
    type: MetricType,
    name: string,
    help: string,
    labelNames: readonly string[],
    options: MetricFamilyOptions = {},
  ) {
    this.type = type;
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    this.#maxSeries = options.maxSeries ?? DEFAULT_MAX_SERIES;
    this.#buckets = options.buckets ?? LATENCY_BUCKETS;
  }

  /** How many label sets are held (the overflow series included). */
  get seriesCount(): number {
    return this.#series.size + (this.#overflow ? 1 : 0);
  }

  /** Adds `n` (default 1) to a counter or gauge. */
  inc(values: readonly string[], n = 1): void {
    this.#get(values).value += n;
  }

  /** Sets a gauge. */
  set(values: readonly string[], value: number): void {
    this.#get(values).value = value;
  }

  /** Records one observation of a histogram. */
  observe(values: readonly string[], value: number): void {
    const s = this.#get(values);
    (s.histogram ??= new Histogram(this.#buckets)).observe(value);
  }

  /**
   * The histogram of one label set, to observe into without a label lookup per observation. Only for a family
   * that is never {@linkcode clear}ed (a cleared family forgets the series this histogram belongs to).
   */
  histogramOf(values: readonly string[]): Histogram {
    const s = this.#get(values);
    return s.histogram ??= new Histogram(this.#buckets);
  }

  /** The current value of a counter or gauge (0 when the label set was never touched). */
  value(values: readonly string[]): number {
    return this.#series.get(values.join("\u0000"))?.value ?? 0;
  }

  /** Forgets every label set (gauges rebuilt on each scrape). */
  clear(): void {
    this.#series.clear();
    this.#overflow = undefined;
  }

  /** Exposition lines, `# HELP` and `# TYPE` first. */
  lines(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    const all = this.#overflow ? [...this.#series.values(), this.#overflow] : [...this.#series.values()];
    for (const s of all) {
      if (this.type === "histogram") {
        if (s.histogram) out.push(...s.histogram.lines(this.name, s.labels));
      } else {
        out.push(`${this.name}${s.labels ? `{${s.labels}}` : ""} ${s.value}`);
      }
    }
    return out;
  }

  /** Adds this family to `/metrics`; returns its remover. */
  register(): () => void {
    const remove = registerCollector(() => this.lines());
    return () => void remove();
  }

  #get(values: readonly string[]): Series {
    const key = values.join("\u0000");
    let s = this.#series.get(key);
    if (s !== undefined) return s;
    if (this.#series.size >= this.#maxSeries) {
      return this.#overflow ??= {
        labels: this.labelNames.map((n) => `${n}="${OVERFLOW_LABEL}"`).join(","),
        value: 0,
      };
    }
    s = {
      labels: this.labelNames.map((n, i) => `${n}="${labelValue(values[i] ?? "")}"`).join(","),
      value: 0,
    };
    this.#series.set(key, s);
    return s;
  }
}
