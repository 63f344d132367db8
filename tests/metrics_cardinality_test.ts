/**
 * Metric label values come from clients (instance names, method paths): thousands of bogus ones must not
 * make thousands of series. Unit test of the capped families, then the real `main.ts` flooded with bogus
 * instance names and method paths over gRPC, Connect and plain HTTP.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { MetricFamily, OVERFLOW_LABEL } from "../src/util/metric_family.ts";
import { memoryCacheConfig, startCairnProcess } from "./fixtures/cairn_process.ts";

Deno.test("MetricFamily: label sets past the cap share one overflow series", () => {
  const f = new MetricFamily("counter", "test_requests", "Requests.", ["instance_name"], { maxSeries: 10 });
  for (let i = 0; i < 10_000; i++) f.inc([`bogus-${i}`]);
  assert.equal(f.seriesCount, 11);
  const lines = f.lines().filter((l) => !l.startsWith("#"));
  assert.equal(lines.length, 11);
  assert.ok(lines.includes(`test_requests{instance_name="${OVERFLOW_LABEL}"} 9990`), lines.join("\n"));
  // Known label sets keep counting on their own series.
  f.inc(["bogus-3"], 5);
  assert.equal(f.value(["bogus-3"]), 6);
  // Label values are escaped, never breaking the exposition format.
  const g = new MetricFamily("gauge", "test_gauge", "G.", ["name"]);
  g.set(['a"b\\c\nd'], 1);
  assert.ok(g.lines().includes('test_gauge{name="a\\"b\\\\c\\nd"} 1'), g.lines().join("\n"));
});

Deno.test("metrics: 10,000 bogus instance names and method paths do not make 10,000 series", async () => {
  const config = memoryCacheConfig({ instances: ["", "main"] }) as {
    servers: { services: Record<string, unknown> }[];
  };
  config.servers[0]!.services.experimental_prometheus = { path: "/metrics" };
  const cairn = await startCairnProcess({ config });
  try {
    const session = http2.connect(`http://127.0.0.1:${cairn.port}`);
    session.on("error", () => {});
    const call = (path: string, body: Uint8Array) =>
      new Promise<void>((resolve) => {
        const req = session.request({
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
        });
        req.on("error", () => resolve());
        req.on("close", () => resolve());
        req.resume();
        const frame = new Uint8Array(5 + body.length);
        new DataView(frame.buffer).setUint32(1, body.length);
        frame.set(body, 5);
        req.end(frame);
      });
    const enc = new TextEncoder();
    // FindMissingBlobsRequest { instance_name (1): "bogus-i" }.
    const findMissing = (name: string) => {
      const n = enc.encode(name);
      return new Uint8Array([0x0a, n.length, ...n]);
    };
    const N = 10_000;
    for (let i = 0; i < N; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, k) => {
          const j = i + k;
          return j % 2 === 0
            ? call(
              "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
              findMissing(`bogus-${j}`),
            )
            : call(`/bogus.Service${j}/Method${j}`, new Uint8Array(0));
        }),
      );
    }
    // Connect and plain HTTP with bogus paths too.
    for (let i = 0; i < 200; i++) {
      const r = await fetch(`${cairn.httpUrl}/bogus.Service${i}/M`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      await r.body?.cancel();
    }
    // A real instance still counts under its own name.
    const digest = new Uint8Array([0x0a, 64, ...enc.encode("ab".repeat(32)), 0x10, 5]);
    await call(
      "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
      new Uint8Array([...findMissing("main"), 0x12, digest.length, ...digest]),
    );
    session.close();
    const res = await fetch(`${cairn.httpUrl}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /^nativelink_cas_requests\{instance_name="main",method="FindMissingBlobs"\} 1$/m);
    assert.match(text, /^nativelink_request_duration_seconds_count\{method="[^"]+FindMissingBlobs"\} \d+$/m);
    const series = text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
    assert.ok(series.length < 2000, `${series.length} series after the flood`);
    assert.ok(!/bogus-\d+/.test(text), "a bogus instance name became a label value");
    assert.ok(!/bogus\.Service/.test(text), "a bogus method path became a label value");
  } finally {
    await cairn.stop();
  }
});
