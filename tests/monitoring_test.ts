/**
 * Seed 000's monitoring, as written, against a real Prometheus: Debian's `prometheus` scrapes the real
 * all-in-one Cairn (`config/local.json5`) while real Bazel builds remotely through it; `promtool` accepts
 * the shipped rules; every metric that seed 000's alerts, key-metrics table and KEDA trigger name has a
 * series; and the seed's hit-ratio query gives a number between 0 and 1.
 */
import assert from "node:assert/strict";
import { bazelClean, prepareWorkspace, runBazelOk } from "./bazel_harness.ts";
import { freePort, startAllInOne } from "./fixtures/exec_fixtures.ts";

const RULES = new URL("../config/monitoring/prometheus-alerts.yml", import.meta.url).pathname;
const SCRAPE = new URL("../config/monitoring/prometheus.yml", import.meta.url).pathname;

/** Every metric seed 000 names: alert rules, the key-metrics table and the KEDA trigger. */
const SEED_METRICS = [
  "nativelink_scheduler_queue_length",
  "nativelink_worker_active_count",
  "nativelink_cas_hit_rate",
  "nativelink_cas_hits",
  "nativelink_cas_requests",
  "nativelink_request_duration_seconds_bucket",
  "nativelink_request_errors_total",
  "nativelink_store_size_bytes",
  "nativelink_worker_execution_failures",
];

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  return { code: r.code, out: d.decode(r.stdout) + d.decode(r.stderr) };
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(base: string, expr: string): Promise<Sample[]> {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = await res.json();
  assert.equal(body.status, "success", `query ${expr}: ${JSON.stringify(body)}`);
  return body.data.result as Sample[];
}

/** Polls `check` until it returns a value (bounded; each poll waits for Prometheus's next scrape). */
async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 90_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

Deno.test("monitoring: seed 000's rules and metrics work in a real Prometheus during a real Bazel build", async () => {
  const checked = await run("promtool", ["check", "rules", RULES]);
  assert.equal(checked.code, 0, checked.out);
  assert.match(checked.out, /SUCCESS: \d+ rules found/);

  const dir = await Deno.makeTempDir({ prefix: "cairn_monitoring_" });
  const cairn = await startAllInOne({ dataDir: `${dir}/data` });
  const promPort = freePort();
  const cairnPort = new URL(cairn.url.replace(/^grpc:/, "http:")).port;
  // The shipped scrape config, pointed at this Cairn and scraping every second.
  const scrape = (await Deno.readTextFile(SCRAPE))
    .replace("127.0.0.1:50051", `127.0.0.1:${cairnPort}`)
    .replace("scrape_interval: 15s", "scrape_interval: 1s")
    .replace("evaluation_interval: 30s", "evaluation_interval: 1s")
    .replace("prometheus-alerts.yml", RULES);
  await Deno.writeTextFile(`${dir}/prometheus.yml`, scrape);
  const prometheus = new Deno.Command("prometheus", {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/tsdb`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const promLog = prometheus.stderr.pipeThrough(new TextDecoderStream());
  let promText = "";
  const pump = (async () => {
    for await (const t of promLog) promText += t;
  })();
  const base = `http://127.0.0.1:${promPort}`;
  const ws = await prepareWorkspace({});
  try {
    await until("Prometheus ready", async () => {
      const r = await fetch(`${base}/-/ready`);
      await r.body?.cancel();
      return r.ok ? true : undefined;
    });
    const flags = [`--remote_executor=${cairn.url}`, `--remote_cache=${cairn.url}`];
    await runBazelOk(ws, ["build", "//..."], { flags });
    await bazelClean(ws);
    await runBazelOk(ws, ["build", "//..."], { flags });

    // The rules loaded into Prometheus itself.
    const rules = await (await fetch(`${base}/api/v1/rules`)).json();
    const names = rules.data.groups.flatMap((g: { rules: { name: string }[] }) => g.rules.map((r) => r.name));
    for (const alert of ["HighQueueLength", "LowCacheHitRate", "WorkerDown", "HighErrorRate"]) {
      assert.ok(names.includes(alert), `Prometheus did not load ${alert}: ${names}`);
    }

    for (const metric of SEED_METRICS) {
      const series = await until(`a series of ${metric}`, async () => {
        const r = await query(base, metric);
        return r.length > 0 ? r : undefined;
      });
      assert.ok(series.length > 0, metric);
    }
    // The seed's own KEDA query.
    const keda = await query(base, "sum(nativelink_scheduler_queue_length)");
    assert.equal(keda.length, 1);
    assert.ok(Number(keda[0]!.value[1]) >= 0);

    // The seed's hit-ratio expression, as written, and its sum over the whole service.
    const ratio = await until("a CAS hit ratio", async () => {
      const r = await query(
        base,
        "sum(rate(nativelink_cas_hits[5m])) / sum(rate(nativelink_cas_requests[5m]))",
      );
      const v = r[0] ? Number(r[0].value[1]) : NaN;
      return Number.isFinite(v) ? v : undefined;
    });
    assert.ok(ratio >= 0 && ratio <= 1, `hit ratio ${ratio}`);
    const perSeries = await query(base, "rate(nativelink_cas_hits[5m]) / rate(nativelink_cas_requests[5m])");
    const finite = perSeries.map((s) => Number(s.value[1])).filter(Number.isFinite);
    assert.ok(finite.length > 0, JSON.stringify(perSeries));
    for (const v of finite) assert.ok(v >= 0 && v <= 1, `ratio ${v}`);
    // One worker is connected; the build hit the cache the second time.
    const workers = await query(base, "sum(nativelink_worker_active_count)");
    assert.equal(Number(workers[0]!.value[1]), 1);
    // The rebuild was answered from the action cache (Prometheus sees it at its next scrape).
    const hits = await until("action-cache hits in Prometheus", async () => {
      const r = await query(base, "sum(nativelink_ac_hits)");
      const v = r[0] ? Number(r[0].value[1]) : 0;
      return v > 0 ? v : undefined;
    });
    assert.ok(hits > 0);
  } finally {
    await ws.cleanup();
    try {
      prometheus.kill("SIGTERM");
    } catch { /* gone */ }
    await prometheus.status;
    await pump.catch(() => {});
    await cairn.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    if (promText.includes("level=ERROR")) console.log(promText.slice(-2000));
  }
});
