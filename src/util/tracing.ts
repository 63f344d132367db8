/**
 * Tracing on Deno's built-in OpenTelemetry (`Deno.telemetry`, on when the process started with
 * `OTEL_DENO=true`; `main.ts` sees to that when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_SERVICE_NAME` is set).
 * Deno exports the spans over OTLP as the standard `OTEL_*` variables say; no npm package is involved.
 *
 * When telemetry is off, {@linkcode TRACING} is false, every span is the shared {@linkcode NOOP_SPAN} and
 * {@linkcode withSpan} just calls its function: callers on hot paths test `TRACING` first and do nothing else.
 *
 * The active span travels with the async context (Deno's context manager), so a span started inside
 * {@linkcode withSpan} (even after an `await`) is its child. Across processes the W3C `traceparent`
 * ({@linkcode traceparentOf}, {@linkcode remoteParent}) carries it.
 *
 * @example
 * ```ts
 * import { inSpan, TRACING } from "./tracing.ts";
 * const bytes = await inSpan("store.read", { "cairn.store": "CAS" }, () => Promise.resolve(new Uint8Array()));
 * console.log(TRACING, bytes.length);
 * ```
 * @module
 */
import { CairnError, codeName } from "./error.ts";

/** An attribute value OTLP carries. */
export type AttributeValue = string | number | boolean;
/** Span attributes. */
export type Attributes = Readonly<Record<string, AttributeValue | undefined>>;

/** What Cairn uses of an OpenTelemetry span. */
export interface TraceSpan {
  setAttribute(key: string, value: AttributeValue): unknown;
  setAttributes(attributes: Attributes): unknown;
  /** `code` 1 is OK, 2 is ERROR (OpenTelemetry's SpanStatusCode). */
  setStatus(status: { code: number; message?: string }): unknown;
  addEvent(name: string, attributes?: Attributes): unknown;
  /** Ends the span, now or at `endTime` (ms since the epoch). */
  end(endTime?: number): void;
  spanContext(): SpanContext;
  isRecording(): boolean;
}

/** A span's identity (W3C trace context). */
export interface SpanContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly traceFlags: number;
  readonly isRemote?: boolean;
}

/** OpenTelemetry span kinds. */
export const SpanKind = { INTERNAL: 0, SERVER: 1, CLIENT: 2, PRODUCER: 3, CONSUMER: 4 } as const;

/** Options of {@linkcode startSpan}. */
export interface SpanOptions {
  readonly kind?: number;
  readonly attributes?: Attributes;
  /** ms since the epoch (default now). */
  readonly startTime?: number;
}

/** A parent: a span of this process, a remote span context, or undefined for the active span. */
export type SpanParent = TraceSpan | SpanContext | undefined;

// The OpenTelemetry.js-compatible objects Deno provides (typed `any` by Deno).
interface OtelContext {
  setValue(key: symbol, value: unknown): OtelContext;
  getValue(key: symbol): unknown;
}
interface OtelTracer {
  startSpan(name: string, options?: unknown, context?: OtelContext): TraceSpan;
}
interface OtelContextManager {
  active(): OtelContext;
  with<R>(context: OtelContext, fn: () => R): R;
}

/** The key OpenTelemetry.js (and Deno) keep the active span under in a context. */
const SPAN_KEY = Symbol.for("OpenTelemetry Context Key SPAN");

const NOOP_CONTEXT: SpanContext = Object.freeze({
  traceId: "00000000000000000000000000000000",
  spanId: "0000000000000000",
  traceFlags: 0,
});

/** The span handed out when telemetry is off: every method does nothing. */
export const NOOP_SPAN: TraceSpan = Object.freeze({
  setAttribute: () => NOOP_SPAN,
  setAttributes: () => NOOP_SPAN,
  setStatus: () => NOOP_SPAN,
  addEvent: () => NOOP_SPAN,
  end: () => {},
  spanContext: () => NOOP_CONTEXT,
  isRecording: () => false,
});

function probe(): { tracer: OtelTracer; contexts: OtelContextManager } | undefined {
  const telemetry = (Deno as { telemetry?: typeof Deno.telemetry }).telemetry;
  if (telemetry === undefined) return undefined;
  const tracer = telemetry.tracerProvider.getTracer("cairn") as OtelTracer;
  try {
    // Throws "otel not initialized" unless the process started with OTEL_DENO=true. The probe span is never
    // ended, so never exported.
    tracer.startSpan("cairn.telemetry_probe");
  } catch {
    return undefined;
  }
  return { tracer, contexts: telemetry.contextManager as OtelContextManager };
}

const otel = probe();

/** Whether spans are recorded and exported (the process started with `OTEL_DENO=true`). */
export const TRACING: boolean = otel !== undefined;

function isSpan(parent: TraceSpan | SpanContext): parent is TraceSpan {
  return typeof (parent as TraceSpan).spanContext === "function";
}

/** The context that makes `parent` the parent (a remote context becomes a foreign span). */
function contextOf(parent: SpanParent): OtelContext | undefined {
  if (otel === undefined) return undefined;
  const active = otel.contexts.active();
  if (parent === undefined) return active;
  if (isSpan(parent)) return parent === NOOP_SPAN ? active : active.setValue(SPAN_KEY, parent);
  const remote = parent;
  return active.setValue(SPAN_KEY, { spanContext: () => remote, isRecording: () => false });
}

/** Starts a span, child of `parent` (default: the active span). {@linkcode NOOP_SPAN} when tracing is off. */
export function startSpan(name: string, options?: SpanOptions, parent?: SpanParent): TraceSpan {
  if (otel === undefined) return NOOP_SPAN;
  const attributes = options?.attributes ? defined(options.attributes) : undefined;
  return otel.tracer.startSpan(
    name,
    {
      kind: options?.kind ?? SpanKind.INTERNAL,
      ...(attributes ? { attributes } : {}),
      ...(options?.startTime !== undefined ? { startTime: options.startTime } : {}),
    },
    contextOf(parent),
  );
}

/** Runs `fn` with `span` active (its child spans, also after awaits, have it as parent). */
export function withSpan<R>(span: TraceSpan, fn: () => R): R {
  if (otel === undefined || span === NOOP_SPAN) return fn();
  return otel.contexts.with(otel.contexts.active().setValue(SPAN_KEY, span), fn);
}

/**
 * Ends `span` with the status of `error` (none: OK). A {@linkcode CairnError}'s gRPC code is recorded as
 * `rpc.grpc.status_code` and its name in the status message.
 */
export function endSpan(span: TraceSpan, error?: unknown, endTime?: number): void {
  if (span === NOOP_SPAN) return;
  if (error === undefined) {
    span.setStatus({ code: 1 });
  } else {
    const e = CairnError.from(error);
    span.setAttribute("rpc.grpc.status_code", e.code);
    span.setStatus({ code: 2, message: `${codeName(e.code)}: ${e.message}` });
  }
  span.end(endTime);
}

/** Runs `fn` in a new child span of the active one, ended with `fn`'s outcome. */
export async function inSpan<R>(
  name: string,
  attributes: Attributes | undefined,
  fn: (span: TraceSpan) => Promise<R>,
): Promise<R> {
  if (otel === undefined) return fn(NOOP_SPAN);
  const span = startSpan(name, attributes ? { attributes } : undefined);
  try {
    const result = await withSpan(span, () => fn(span));
    endSpan(span);
    return result;
  } catch (err) {
    endSpan(span, err);
    throw err;
  }
}

/** The W3C `traceparent` of `span` (`00-<trace>-<span>-<flags>`), or undefined for {@linkcode NOOP_SPAN}. */
export function traceparentOf(span: TraceSpan): string | undefined {
  if (span === NOOP_SPAN) return undefined;
  const c = span.spanContext();
  return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

/**
 * The remote span a W3C `traceparent` names, as a parent for {@linkcode startSpan}; undefined when the value
 * is absent or malformed (version ff, all-zero ids), so a bad header only loses the link.
 */
export function remoteParent(traceparent: string | undefined): SpanContext | undefined {
  if (!traceparent) return undefined;
  const m = TRACEPARENT.exec(traceparent.trim().toLowerCase());
  if (m === null || m[1] === "ff" || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined;
  if (m[1] === "00" && traceparent.trim().length !== 55) return undefined;
  return { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16), isRemote: true };
}

/** A digest as a span attribute: `hash/size`. */
export function digestAttribute(
  digest: { readonly hash: string; readonly size?: number; readonly sizeBytes?: bigint } | undefined,
): string | undefined {
  if (digest === undefined || !digest.hash) return undefined;
  return `${digest.hash}/${digest.size ?? digest.sizeBytes ?? 0}`;
}

function defined(attributes: Attributes): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const k in attributes) {
    const v = attributes[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}
