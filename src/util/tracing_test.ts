import assert from "node:assert/strict";
import {
  digestAttribute,
  NOOP_SPAN,
  remoteParent,
  startSpan,
  traceparentOf,
  TRACING,
  withSpan,
} from "./tracing.ts";
import { wantsRelaunch } from "./otel_launch.ts";

Deno.test("tracing is off without OTEL_DENO: spans are the shared no-op and withSpan just calls", () => {
  assert.equal(TRACING, false);
  const span = startSpan("x", { attributes: { a: 1 } });
  assert.equal(span, NOOP_SPAN);
  assert.equal(traceparentOf(span), undefined);
  assert.equal(withSpan(span, () => 42), 42);
});

Deno.test("remoteParent reads a W3C traceparent and refuses malformed ones", () => {
  assert.deepEqual(remoteParent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), {
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "b7ad6b7169203331",
    traceFlags: 1,
    isRemote: true,
  });
  for (
    const bad of [
      undefined,
      "",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
      "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-00000000000000000000000000000000-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
    ]
  ) assert.equal(remoteParent(bad), undefined, String(bad));
});

Deno.test("digestAttribute renders hash/size from either digest shape", () => {
  assert.equal(digestAttribute({ hash: "ab", size: 3 }), "ab/3");
  assert.equal(digestAttribute({ hash: "ab", sizeBytes: 7n }), "ab/7");
  assert.equal(digestAttribute(undefined), undefined);
});

Deno.test("wantsRelaunch: OTEL endpoint or service name without OTEL_DENO", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(wantsRelaunch(env({})), false);
  assert.equal(wantsRelaunch(env({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317" })), true);
  assert.equal(wantsRelaunch(env({ OTEL_SERVICE_NAME: "nativelink" })), true);
  assert.equal(wantsRelaunch(env({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" })), true);
  assert.equal(wantsRelaunch(env({ OTEL_SERVICE_NAME: "x", OTEL_DENO: "true" })), false);
  assert.equal(wantsRelaunch(env({ OTEL_SERVICE_NAME: "x", OTEL_DENO: "false" })), false);
  assert.equal(wantsRelaunch(env({ OTEL_SERVICE_NAME: "x", CAIRN_OTEL_RELAUNCHED: "1" })), false);
  assert.equal(wantsRelaunch(env({ OTEL_EXPORTER_OTLP_ENDPOINT: "" })), false);
});
