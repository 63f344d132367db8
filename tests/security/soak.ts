/**
 * `deno task soak`: the all-in-one Cairn (`config/local.json5`, its real sandboxed worker) under minutes of
 * mixed, well-behaved traffic at 64 concurrent streams (uploads, reads, action-cache hits, Execute), while
 * attack clients run in bursts: HTTP/2 rapid reset, stalled ByteStream uploads and a zstd bomb.
 *
 * It passes (exit 0) when the server never exits, the well-behaved client sees no error, a probe
 * (GetCapabilities and a small ByteStream read, 1 s deadline each, every second, from a process of its own:
 * `soak_probe.ts`) is always answered, and the server's RSS over the last minute stays within 20% of its
 * first-minute level (sampled every 5 s from the moment the traffic starts).
 *
 * @example
 * ```sh
 * deno task soak                 # 10 minutes
 * deno task soak --minutes 2     # shorter
 * deno task soak --minutes 3 --samples /tmp/s.csv --server-flags "--v8-flags=--trace-gc" --server-log /tmp/s.log
 * deno task soak --cas-max-bytes 10gb   # the shipped CAS size: its index grows for the whole run
 * ```
 *
 * The CAS is capped (`--cas-max-bytes`, default 1gb, through `CAIRN_CAS_MAX_BYTES`) so that it fills in the
 * first minutes and evicts from then on, as a production cache does: the soak writes ~8 GiB of new blobs in
 * 10 minutes, and with the shipped 10 GB the store's index (about 250 bytes of heap per blob) would grow for
 * the whole run, which is data, not a leak. The number of CAS entries is reported beside the RSS.
 * @module
 */
import http2 from "node:http2";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { zstdCompress } from "node:zlib";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  ActionCache,
  ActionResultSchema,
  type Digest,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream, WriteRequestSchema } from "../../src/gen/google/bytestream/bytestream_pb.ts";
import { createGrpcClientTransport } from "../../src/transport/grpc_client.ts";
import { blobOf, buildAction, ExecClient, freePort, startAllInOne } from "../fixtures/exec_fixtures.ts";
import { growthLines, InspectorHeap, type Retained, type SnapshotGroup } from "./inspector_heap.ts";

const args = Deno.args;
const minutesArg = args.indexOf("--minutes");
const MINUTES = minutesArg >= 0 ? Number(args[minutesArg + 1]) : 10;
if (!(MINUTES > 0)) throw new Error("--minutes needs a positive number");
const DURATION_MS = MINUTES * 60_000;
const STREAMS = 64;
/** Which attack clients run (`--attacks reset,stall,bomb`, all by default). */
const attacksArg = args.indexOf("--attacks");
const ATTACKS = new Set((attacksArg >= 0 ? args[attacksArg + 1]! : "reset,stall,bomb").split(","));
/** Attack bursts: every BURST_EVERY_MS, for BURST_MS. */
const BURST_EVERY_MS = 30_000;
const BURST_MS = 10_000;
/**
 * `--inspect`: start the server with its V8 inspector on a loopback port, and report its heap after a full
 * collection at the start and the end, with the kinds of objects that grew (a diagnosis, not a criterion).
 */
const INSPECT = args.includes("--inspect");
const ATTACKER = new URL("./h2_attacker.ts", import.meta.url).pathname;
const PROBE = new URL("./soak_probe.ts", import.meta.url).pathname;
/** `--server-flags "--v8-flags=--trace-gc"`: extra `deno run` flags for the server (a diagnosis). */
const serverFlagsArg = args.indexOf("--server-flags");
const SERVER_FLAGS = serverFlagsArg >= 0 ? args[serverFlagsArg + 1]!.split(" ").filter((f) => f) : [];
/** `--samples FILE`: write the RSS and heap samples (every 5 s) to FILE as CSV at the end. */
const samplesArg = args.indexOf("--samples");
const SAMPLES = samplesArg >= 0 ? args[samplesArg + 1]! : undefined;
/** `--server-log FILE`: write everything the server printed to FILE at the end. */
const serverLogArg = args.indexOf("--server-log");
const SERVER_LOG = serverLogArg >= 0 ? args[serverLogArg + 1]! : undefined;
/** `--cas-max-bytes SIZE`: the CAS's eviction size (`config/local.json5`'s `CAIRN_CAS_MAX_BYTES`). */
const casMaxArg = args.indexOf("--cas-max-bytes");
const CAS_MAX_BYTES = casMaxArg >= 0 ? args[casMaxArg + 1]! : "1gb";

const dataDir = await Deno.makeTempDir({ prefix: "cairn-soak-" });
const inspectPort = INSPECT ? freePort() : 0;
const cairn = await startAllInOne({
  dataDir,
  denoFlags: [...INSPECT ? [`--inspect=127.0.0.1:${inspectPort}`] : [], ...SERVER_FLAGS],
  env: { CAIRN_CAS_MAX_BYTES: CAS_MAX_BYTES },
});
const inspector = INSPECT ? await InspectorHeap.connect(inspectPort) : undefined;
const port = Number(new URL(cairn.url.replace("grpc:", "http:")).port);
const pid = cairn.process.pid;
console.log(
  `soak: Cairn pid ${pid} on ${cairn.url}, ${MINUTES} min, ${STREAMS} streams, CAS max ${CAS_MAX_BYTES}`,
);

// Stopping the soak stops the server it started.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    try {
      Deno.kill(pid, "SIGTERM");
    } catch { /* gone */ }
    Deno.exit(130);
  });
}

const mib = (bytes: number) => Math.round(bytes / 1048576);
const transport = createGrpcClientTransport(cairn.url, { defaultTimeoutMs: 10_000 });
const exec = new ExecClient(cairn.url);
const bs: Client<typeof ByteStream> = createClient(ByteStream, transport);
const ac: Client<typeof ActionCache> = createClient(ActionCache, transport);

// Fixtures the well-behaved client reads back.
const small = blobOf(new Uint8Array(randomBytes(4096)));
await exec.upload([small]);
const cachedAction = buildAction({ argv: ["/bin/echo", "soak"] });
await exec.upload(cachedAction.blobs);
const first = await exec.execute(cachedAction.actionDigest);
if (first.response.result?.exitCode !== 0) throw new Error("soak: the seed action failed");
const acKey = buildAction({ argv: ["/bin/true", randomUUID()] });
await ac.updateActionResult({
  actionDigest: acKey.actionDigest,
  actionResult: create(ActionResultSchema, { exitCode: 0, stdoutDigest: small.digest }),
});

const showRetained = (r: Retained) =>
  `RSS ${mib(r.rss)} MiB, heap used ${mib(r.heapUsed)} MiB of ${mib(r.heapTotal)}, external ${
    mib(r.external)
  } MiB`;
let snapshotBefore: Map<string, SnapshotGroup> | undefined;
if (inspector) {
  console.log(`soak: after a full GC at the start: ${showRetained(await inspector.retained())}`);
  snapshotBefore = await inspector.snapshotSummary();
}

const stats = {
  ops: new Map<string, number>(),
  errors: [] as string[],
  probes: 0,
  probeFailures: [] as string[],
  probeMaxMs: 0,
  attacks: { resets: 0, stalled: 0, refusedStalled: 0, bombs: 0, bombCodes: new Map<string, number>() },
};
const count = (op: string) => stats.ops.set(op, (stats.ops.get(op) ?? 0) + 1);
const fail = (op: string, err: unknown) => {
  const msg = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : String(err);
  if (stats.errors.length < 50) stats.errors.push(`${op}: ${msg}`);
  else stats.errors.length++;
};

const started = Date.now();
const endAt = started + DURATION_MS;
const running = () => Date.now() < endAt && alive();
let exited = false;
cairn.process.done.then(() => exited = true);
const alive = () => !exited;

function digestOf(bytes: Uint8Array): Digest {
  return {
    hash: createHash("sha256").update(bytes).digest("hex"),
    sizeBytes: BigInt(bytes.length),
  } as Digest;
}

async function readAll(name: string, client = bs, timeoutMs = 10_000): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const r of client.read({ resourceName: name }, { timeoutMs })) {
    parts.push(r.data);
    n += r.data.length;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** One well-behaved operation, chosen by weight. */
async function wellBehaved(i: number): Promise<void> {
  const roll = Math.random();
  if (roll < 0.4) {
    const got = await readAll(`blobs/${small.digest.hash}/${small.digest.sizeBytes}`);
    if (digestOf(got).hash !== small.digest.hash) throw new Error("read returned the wrong bytes");
    count("read");
  } else if (roll < 0.6) {
    const blob = blobOf(new Uint8Array(randomBytes(1024 + Math.floor(Math.random() * 15 * 1024))));
    await exec.upload([blob]);
    const missing = await exec.cas.findMissingBlobs({ blobDigests: [blob.digest] });
    if (missing.missingBlobDigests.length !== 0) throw new Error("an uploaded blob is missing");
    count("batch-upload");
  } else if (roll < 0.8) {
    const r = await ac.getActionResult({ actionDigest: acKey.actionDigest });
    if (r.stdoutDigest?.hash !== small.digest.hash) throw new Error("wrong action result");
    count("ac-hit");
  } else if (roll < 0.9) {
    const bytes = new Uint8Array(randomBytes(256 * 1024));
    const d = digestOf(bytes);
    const name = `uploads/${randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`;
    const chunks = async function* () {
      for (let o = 0; o < bytes.length; o += 64 * 1024) {
        yield {
          resourceName: o === 0 ? name : "",
          writeOffset: BigInt(o),
          finishWrite: o + 64 * 1024 >= bytes.length,
          data: bytes.subarray(o, o + 64 * 1024),
        };
      }
    };
    const res = await bs.write(chunks());
    if (res.committedSize !== BigInt(bytes.length)) throw new Error("short write");
    count("bytestream-write");
  } else if (i % 8 === 0) {
    // A fresh action: scheduled, run in the sandbox, result uploaded.
    const a = buildAction({ argv: ["/bin/echo", randomUUID()] });
    await exec.upload(a.blobs);
    const run = await exec.execute(a.actionDigest);
    if (run.response.result?.exitCode !== 0) {
      throw new Error(`action failed: ${run.response.status?.message}`);
    }
    count("execute");
  } else {
    const run = await exec.execute(cachedAction.actionDigest);
    if (!run.response.cachedResult) throw new Error("expected a cached result");
    count("execute-cached");
  }
}

async function clientLoop(i: number): Promise<void> {
  while (running()) {
    try {
      await wellBehaved(i);
    } catch (err) {
      fail("client", err);
    }
  }
}

/**
 * The probe runs as a process of its own (`soak_probe.ts`, its own connection and event loop): what it
 * measures is the server's latency, not this process's, which drives 64 client streams and the attacks.
 */
async function probeLoop(): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--config=${new URL("../../deno.json", import.meta.url).pathname}`,
      "--allow-net=127.0.0.1",
      PROBE,
      cairn.url,
      `blobs/${small.digest.hash}/${small.digest.sizeBytes}`,
      String(Math.ceil(DURATION_MS / 1000)),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stop = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* done */ }
  };
  void cairn.process.done.then(stop);
  for await (const line of child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lines())) {
    const t = Math.round((Date.now() - started) / 1000);
    if (line.startsWith("ok ")) {
      // Each call has its own 1 s deadline (the criterion); the slowest of either is reported.
      const [caps, read] = line.slice(3).split(" ").map(Number);
      stats.probes++;
      stats.probeMaxMs = Math.max(stats.probeMaxMs, caps!, read!);
    } else if (line.startsWith("fail ")) {
      stats.probes++;
      stats.probeFailures.push(`at ${t} s: ${line.slice(5)}`);
    }
  }
  // A probe that did not run is no probe answered: it must have run to the end, probing.
  const { code } = await child.status;
  if (alive() && code !== 0) stats.probeFailures.push(`the probe process exited with code ${code}`);
  if (stats.probes === 0) stats.probeFailures.push("the probe process reported no probe");
}

/** Splits a text stream into lines. */
function lines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) controller.enqueue(p);
    },
    flush(controller) {
      if (rest) controller.enqueue(rest);
    },
  });
}

// RSS of the server process, sampled every 5 s.
const rss: { t: number; kib: number }[] = [];
function sampleRss(): void {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    if (m) rss.push({ t: Date.now() - started, kib: Number(m[1]) });
  } catch { /* exited */ }
}
const rssTimer = setInterval(sampleRss, 5000);

// The server's own view (its /metrics), every 5 s: V8 heap in use, reserved, and external (buffers).
const heap: { t: number; used: number; total: number; external: number; casEntries: number }[] = [];
async function sampleHeap(): Promise<void> {
  try {
    const text =
      await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) }))
        .text();
    const g = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    heap.push({
      t: Date.now() - started,
      used: g("cairn_heap_used_bytes"),
      total: g("cairn_heap_total_bytes"),
      external: g("cairn_external_memory_bytes"),
      casEntries: Number(/^cairn_store_entries\{[^}]*store="CAS"[^}]*\} (\S+)$/m.exec(text)?.[1] ?? NaN),
    });
  } catch { /* busy or gone: the next sample */ }
}
const heapTimer = setInterval(() => void sampleHeap(), 5000);

// --- attacks -----------------------------------------------------------------------------------------

function grpcHeaders(path: string): http2.OutgoingHttpHeaders {
  return { ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" };
}

function frame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

function connect(): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.on("error", () => {});
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/**
 * HEADERS then RST_STREAM as fast as the connections take them (4 connections), from a process of its own
 * (`h2_attacker.ts`), so the probe measures the server and not this process's event loop.
 */
async function rapidReset(untilMs: number): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", ATTACKER, "rapid-reset", String(port), "4", "5000"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* done */ }
  }, Math.max(0, untilMs - Date.now()));
  const out = await new Response(child.stdout).text();
  await child.status;
  clearTimeout(timer);
  const sent = /sent (\d+)/.exec(out);
  stats.attacks.resets += sent ? Number(sent[1]) : 0;
}

/** ByteStream Writes that send 1 KiB and then wait, on 8 connections, held until the burst ends. */
async function stalledUploads(untilMs: number): Promise<void> {
  const sessions = await Promise.all([...Array(8)].map(() => connect().catch(() => undefined)));
  const data = new Uint8Array(1024);
  for (const s of sessions) {
    if (!s) continue;
    for (let k = 0; k < 250 && !s.destroyed; k++) {
      try {
        const req = s.request(grpcHeaders("/google.bytestream.ByteStream/Write"));
        req.on("error", () => {});
        req.on("response", (h) => {
          if (h["grpc-status"] && h["grpc-status"] !== "0") stats.attacks.refusedStalled++;
        });
        req.on("trailers", (h) => {
          if (h["grpc-status"] && h["grpc-status"] !== "0") stats.attacks.refusedStalled++;
        });
        const msg = toBinary(
          WriteRequestSchema,
          create(WriteRequestSchema, {
            resourceName: `uploads/${randomUUID()}/blobs/${"ab".repeat(32)}/1048576`,
            writeOffset: 0n,
            data,
          }),
        );
        req.write(frame(msg));
        stats.attacks.stalled++;
      } catch {
        break;
      }
    }
  }
  await new Promise((r) => setTimeout(r, Math.max(0, untilMs - Date.now())));
  for (const s of sessions) s?.destroy();
}

/** A compressed upload that declares 1 GiB of zeros in ~64 KiB of zstd. */
const bomb = await promisify(zstdCompress)(new Uint8Array(64 * 1024 * 1024)).then((x) => new Uint8Array(x));
async function zstdBomb(): Promise<void> {
  const declared = 1024 * 1024 * 1024;
  const name = `uploads/${randomUUID()}/compressed-blobs/zstd/${"cd".repeat(32)}/${declared}`;
  const chunks = async function* () {
    // The same 64 MiB-of-zeros frame, 16 times: 1 GiB when decompressed.
    for (let k = 0; k < 16; k++) {
      yield {
        resourceName: k === 0 ? name : "",
        writeOffset: BigInt(k * bomb.length),
        finishWrite: k === 15,
        data: bomb,
      };
    }
  };
  try {
    await bs.write(chunks(), { timeoutMs: 20_000 });
    stats.attacks.bombCodes.set("OK", (stats.attacks.bombCodes.get("OK") ?? 0) + 1);
  } catch (err) {
    const code = err instanceof ConnectError ? Code[err.code] : "error";
    stats.attacks.bombCodes.set(code, (stats.attacks.bombCodes.get(code) ?? 0) + 1);
  }
  stats.attacks.bombs++;
}

async function attackLoop(): Promise<void> {
  while (running()) {
    const waitUntil = Math.min(endAt, Date.now() + BURST_EVERY_MS - BURST_MS);
    while (running() && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 250));
    if (!running()) return;
    const until = Math.min(endAt, Date.now() + BURST_MS);
    console.log(`soak: attack burst at ${Math.round((Date.now() - started) / 1000)} s`);
    await Promise.all([
      ATTACKS.has("reset") ? rapidReset(until) : undefined,
      ATTACKS.has("stall") ? stalledUploads(until) : undefined,
      ATTACKS.has("bomb") ? zstdBomb() : undefined,
      ATTACKS.has("bomb") ? zstdBomb() : undefined,
    ]);
  }
}

let shownErrors = 0;
const progress = setInterval(() => {
  for (const e of stats.errors.slice(shownErrors, 5)) console.log(`soak: error: ${e}`);
  shownErrors = Math.min(stats.errors.length, 5);
  const last = rss.at(-1);
  const h = heap.at(-1);
  const total = [...stats.ops.values()].reduce((a, b) => a + b, 0);
  console.log(
    `soak: ${Math.round((Date.now() - started) / 1000)} s, ${total} ops, ${stats.errors.length} errors, ` +
      `${stats.probeFailures.length} probe failures, RSS ${last ? Math.round(last.kib / 1024) : "?"} MiB` +
      (h ? `, heap ${mib(h.used)}/${mib(h.total)} MiB, external ${mib(h.external)} MiB` : ""),
  );
}, 30_000);

// No sample before the traffic starts: the first-minute level is that of the server under load.
await Promise.all([
  ...[...Array(STREAMS)].map((_, i) => clientLoop(i)),
  probeLoop(),
  attackLoop(),
]);
clearInterval(progress);
clearInterval(rssTimer);
clearInterval(heapTimer);
sampleRss();

// --- verdict -----------------------------------------------------------------------------------------
const firstMinute = rss.filter((s) => s.t <= 60_000);
const lastMinute = rss.filter((s) => s.t >= DURATION_MS - 60_000);
const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / Math.max(1, xs.length);
const kib = (xs: { kib: number }[]) => xs.map((x) => x.kib);
/** The samples of minute `m` (from the traffic's start). */
const inMinute = (m: number) => (x: { t: number }) => x.t > m * 60_000 && x.t <= (m + 1) * 60_000;
const base = mean(kib(firstMinute));
const end = mean(kib(lastMinute));
const growth = base > 0 ? end / base - 1 : 0;
const peak = Math.max(...rss.map((s) => s.kib));
const survived = alive();

console.log("\nsoak results");
console.log(`  duration             ${MINUTES} min, ${STREAMS} client streams`);
console.log(`  well-behaved ops     ${[...stats.ops].map(([k, v]) => `${k} ${v}`).join(", ")}`);
console.log(`  client errors        ${stats.errors.length}`);
for (const e of stats.errors.slice(0, 10)) console.log(`    ${e}`);
console.log(
  `  probe failures       ${stats.probeFailures.length} of ${stats.probes} (slowest answered call ${
    Math.round(stats.probeMaxMs)
  } ms)`,
);
for (const e of stats.probeFailures.slice(0, 10)) console.log(`    ${e}`);
console.log(
  `  attacks              ${stats.attacks.resets} resets, ${stats.attacks.stalled} stalled uploads ` +
    `(${stats.attacks.refusedStalled} refused), ${stats.attacks.bombs} zstd bombs (${
      [...stats.attacks.bombCodes].map(([k, v]) => `${k} ${v}`).join(", ")
    })`,
);
console.log(
  `  server RSS           first minute ${Math.round(base / 1024)} MiB, last minute ${
    Math.round(end / 1024)
  } MiB (${(growth * 100).toFixed(1)}%), peak ${Math.round(peak / 1024)} MiB`,
);
const minutes = [...Array(Math.ceil(DURATION_MS / 60_000))].map((_, m) => mean(kib(rss.filter(inMinute(m)))));
// The trend shows whether growth levels off (warm-up, cache and allocator pools) or keeps climbing.
console.log(`  server RSS by minute ${minutes.map((k) => Math.round(k / 1024)).join(", ")} MiB`);
const casByMinute = [...Array(Math.ceil(DURATION_MS / 60_000))].map((_, m) =>
  mean(heap.filter(inMinute(m)).map((x) => x.casEntries).filter((n) => n >= 0))
);
console.log(
  `  CAS entries by minute ${casByMinute.map((k) => Math.round(k)).join(", ")} (max ${CAS_MAX_BYTES})`,
);
console.log(`  server alive         ${survived}`);
if (inspector && survived) {
  console.log(`  after a full GC      ${showRetained(await inspector.retained())}`);
  const trimmed = await inspector.trimmed();
  if (trimmed) console.log(`  after malloc_trim(0) ${showRetained(trimmed)}`);
  const after = await inspector.snapshotSummary();
  console.log("  heap growth by kind (start → end):");
  for (const line of growthLines(snapshotBefore!, after)) console.log(`    ${line}`);
  inspector.close();
}

if (SAMPLES) {
  const rows = ["t_s,rss_mib,heap_used_mib,heap_total_mib,external_mib,cas_entries"];
  for (const r of rss) rows.push(`${(r.t / 1000).toFixed(1)},${Math.round(r.kib / 1024)},,,,`);
  for (const h of heap) {
    rows.push(
      `${(h.t / 1000).toFixed(1)},,${mib(h.used)},${mib(h.total)},${mib(h.external)},${h.casEntries}`,
    );
  }
  await Deno.writeTextFile(SAMPLES, rows.join("\n") + "\n");
}
if (SERVER_LOG) await Deno.writeTextFile(SERVER_LOG, cairn.process.log);
const ok = survived && stats.errors.length === 0 && stats.probeFailures.length === 0 && growth <= 0.2 &&
  !stats.attacks.bombCodes.has("OK");
console.log(ok ? "soak: PASS" : "soak: FAIL");
await cairn.stop().catch((err) => console.log(`soak: stop: ${err}`));
await Deno.remove(dataDir, { recursive: true }).catch(() => {});
Deno.exit(ok ? 0 : 1);
