/**
 * Remote-cache throughput of the real `main.ts` (a child process, filesystem CAS behind a verify store as in
 * `config/local.json5`, memory AC) over loopback, each figure beside the ceiling measured in the same run:
 *
 * - ByteStream Write / Read of a 1 GiB blob: the framed WriteRequest stream is generated as a stream into a
 *   file (never held in memory) and sent by h2load (`-n 1`, a C client, so both shared cores go to the
 *   server); the same bytes go into / come out of a bare `node:http2` server with the same framing;
 * - SHA-256 on one core (node:crypto), which bounds what a verifying CAS can accept;
 * - FindMissingBlobs of 1,000 digests, calls/s (h2load);
 * - GetActionResult with 64 concurrent streams (h2load `-c 4 -m 16`), calls/s, p50 and p99, against a bare
 *   `node:http2` unary handler answering the same bytes, from three action caches: memory, filesystem, and
 *   `config/local.json5`'s completeness_checking(filesystem) (whose outputs are in the CAS); and one call at a
 *   time (`-c 1 -m 1`, p50) from each;
 * - peak RSS of the server during the 1 GiB transfers (VmRSS of the child from /proc).
 *
 * @example
 * ```sh
 * deno run -A tests/bench/cache_bench.ts [--size-mib 1024] [--chunk-kib 1024] [--duration 5] [--no-verify] [--window-mib 0]
 *   [--connection-window-mib 0]
 * # one part only (write, read, fmb, gar), with a V8 CPU profile of the server written into DIR (and of the
 * # bare server into DIR/bare):
 * deno run -A tests/bench/cache_bench.ts --only gar --cpu-prof DIR
 * # bare and Cairn runs (write, read, GetActionResult) alternate N times (default 3); medians are reported
 * # beside every run:
 * deno run -A tests/bench/cache_bench.ts --repeat 5
 * # Cairn on the Deno.serve server path (listener server: "deno_serve"):
 * deno run -A tests/bench/cache_bench.ts --server deno_serve
 * ```
 * @module
 */
import http2 from "node:http2";
import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ActionResultSchema,
  FindMissingBlobsRequestSchema,
  GetActionResultRequestSchema,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ReadRequestSchema } from "../../src/gen/google/bytestream/bytestream_pb.ts";
import { type Digest, digestOf } from "../../src/digest/digest.ts";
import { patternStream } from "../../src/util/streams.ts";
import { startCairnProcess } from "../fixtures/cairn_process.ts";
import { type H2loadResult, runH2load } from "../fixtures/h2load.ts";

const MiB = 1024 * 1024;

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}

function frame(msg: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + msg.length);
  new DataView(out.buffer).setUint32(1, msg.length);
  out.set(msg, 5);
  return out;
}

// --- bare server mode: `cache_bench.ts --bare-server`; swallows uploads, sends downloads, answers unary ---

if (Deno.args.includes("--bare-server")) {
  const unaryAnswer = frame(toBinary(ActionResultSchema, benchActionResult()));
  // The same HTTP/2 settings as Cairn's listener without advanced_http (node:http2 defaults).
  const server = http2.createServer();
  server.on("session", (session) => session.on("error", () => {}));
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on("error", () => {}); // h2load hangs up at the end of a timed run
    const path = String(headers[":path"]);
    if (path === "/download") {
      // Sends `size` bytes as gRPC-framed messages of `chunk` bytes, like a ByteStream Read.
      const size = Number(headers["x-size"]);
      const chunk = Number(headers["x-chunk"]);
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      const body = new Uint8Array(chunk).fill(7);
      const head = new Uint8Array(5 + 6);
      let sent = 0;
      const pump = () => {
        while (sent < size) {
          const n = Math.min(chunk, size - sent);
          new DataView(head.buffer).setUint32(1, n + 6);
          sent += n;
          stream.write(head);
          if (!stream.write(n === chunk ? body : body.subarray(0, n))) return void stream.once("drain", pump);
        }
        stream.end();
      };
      stream.on("data", () => {});
      stream.on("end", pump);
      return;
    }
    let bytes = 0;
    stream.on("data", (c: Uint8Array) => bytes += c.length);
    stream.on("end", () => {
      if (stream.destroyed || stream.closed) return; // the client hung up (end of a timed h2load run)
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "x-bytes": String(bytes) }));
      stream.end(path === "/upload" ? frame(new Uint8Array(0)) : unaryAnswer);
    });
  });
  server.listen(0, "127.0.0.1", () => {
    console.log(JSON.stringify({ port: (server.address() as { port: number }).port }));
  });
  Deno.addSignalListener("SIGTERM", () => server.close(() => Deno.exit(0)));
  await new Promise(() => {});
}

/** The output blobs the bench ActionResult names (stored in the CAS, so a completeness check passes). */
function benchOutputs(): Uint8Array[] {
  return Array.from({ length: 10 }, (_, i) => new TextEncoder().encode(`bench output ${i} `.repeat(60 + i)));
}

/** The ActionResult GetActionResult answers (also the bare unary answer, so both send the same bytes). */
function benchActionResult() {
  const outputs = benchOutputs().map((b) => digestOf(b));
  const d = (i: number) => ({ hash: outputs[i]!.hash, sizeBytes: BigInt(outputs[i]!.size) });
  return create(ActionResultSchema, {
    exitCode: 0,
    outputFiles: Array.from(
      { length: 4 },
      (_, i) => ({ path: `bazel-out/k8-fastbuild/bin/out_${i}.o`, digest: d(i) }),
    ),
    stdoutDigest: d(9),
  });
}

// --- raw gRPC over node:http2 (the client of both servers) ---------------------------------------------

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** WriteRequest wire bytes up to the data field's payload: name (first only), offset, finish, data tag+len. */
function writeRequestHead(
  name: string | undefined,
  offset: number,
  finish: boolean,
  dataLen: number,
): Uint8Array {
  const bytes: number[] = [];
  if (name !== undefined) {
    const n = new TextEncoder().encode(name);
    bytes.push(0x0a, ...varint(n.length), ...n);
  }
  if (offset > 0) bytes.push(0x10, ...varint(offset));
  if (finish) bytes.push(0x18, 1);
  if (dataLen > 0) bytes.push(0x52, ...varint(dataLen)); // field 10, wire type 2
  const msgLen = bytes.length + dataLen;
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, msgLen);
  out.set(bytes, 5);
  return out;
}

function connect(port: number): http2.ClientHttp2Session {
  const s = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 1 << 20 } });
  s.on("connect", () => {
    if (!s.destroyed) s.setLocalWindowSize?.(1 << 24);
  });
  s.on("error", () => {});
  return s;
}

interface CallResult {
  status: string;
  message: string;
  bytes: number;
}

function grpcRequest(session: http2.ClientHttp2Session, path: string, extra: Record<string, string> = {}) {
  return session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
    ...extra,
  });
}

function finish(stream: http2.ClientHttp2Stream, countBody = false): Promise<CallResult> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let headers: Record<string, unknown> = {};
    stream.on("response", (h) => headers = h);
    stream.on("trailers", (t) => headers = { ...headers, ...t });
    stream.on("data", (c: Uint8Array) => {
      if (countBody) bytes += c.length;
    });
    stream.on("error", reject);
    stream.on("close", () =>
      resolve({
        status: String(headers["grpc-status"] ?? "?"),
        message: decodeURIComponent(String(headers["grpc-message"] ?? "")),
        bytes,
      }));
  });
}

// --- h2load ---------------------------------------------------------------------------------------

/** h2load on `path` with `body` (bytes, or a file already holding them), latencies logged. */
async function h2load(
  port: number,
  path: string,
  body: Uint8Array | string,
  args: string[],
): Promise<H2loadResult> {
  if (typeof body === "string") return await runH2load(port, args, { dataFile: body, path, latencies: true });
  const file = await Deno.makeTempFile({ prefix: "cairn_bench_body_" });
  try {
    await Deno.writeFile(file, body);
    return await runH2load(port, args, { dataFile: file, path, latencies: true });
  } finally {
    await Deno.remove(file);
  }
}

// --- the run ----------------------------------------------------------------------------------------

const sizeMiB = arg("--size-mib", 1024);
const chunkKiB = arg("--chunk-kib", 1024);
const duration = arg("--duration", 5);
/** `--window-mib N`: give the server's listener N MiB HTTP/2 stream windows (advanced_http); 0 = defaults. */
const windowMiB = arg("--window-mib", 0);
/** `--connection-window-mib N`: with `--window-mib`, the connection window (default 4 × the stream window). */
const connectionWindowMiB = arg("--connection-window-mib", 4 * windowMiB);
/** `--only write,read,fmb,gar`: run those parts only (write runs whenever read does). */
/** `--server deno_serve`: Cairn's listener on the Deno.serve path (default node_http2). */
const serverPath = Deno.args.indexOf("--server") >= 0
  ? Deno.args[Deno.args.indexOf("--server") + 1]
  : "node_http2";
const onlyArg = Deno.args.indexOf("--only") >= 0 ? Deno.args[Deno.args.indexOf("--only") + 1] ?? "" : "";
const parts = new Set(onlyArg ? onlyArg.split(",") : ["write", "read", "fmb", "gar"]);
if (parts.has("read")) parts.add("write");
/** `--cpu-prof DIR`: the server writes a V8 CPU profile into DIR when it stops. */
const cpuProfDir = Deno.args.indexOf("--cpu-prof") >= 0
  ? Deno.args[Deno.args.indexOf("--cpu-prof") + 1]
  : undefined;
const SIZE = sizeMiB * MiB;
const CHUNK = chunkKiB * 1024;
const fmt = (n: number, d = 0) => n.toFixed(d);
const pctOf = (a: number, b: number) => `${(a / b * 100).toFixed(0)}%`;

async function rssKiB(pid: number): Promise<number> {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await Deno.readTextFile(`/proc/${pid}/status`));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system, all threads) `pid` has used so far. */
async function cpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/** Runs `fn`, returning its result and the CPU seconds per GiB moved that `pid` spent meanwhile. */
async function cpuPerGiB<T>(pid: number, fn: () => Promise<T>): Promise<[T, number]> {
  const before = await cpuSeconds(pid);
  const r = await fn();
  return [r, (await cpuSeconds(pid) - before) / (SIZE / (1024 * MiB))];
}

/** Samples VmRSS of `pid` every 50 ms until stopped; returns the peak in MiB. */
function sampleRss(pid: number): () => number {
  let peak = 0;
  const timer = setInterval(async () => {
    peak = Math.max(peak, await rssKiB(pid));
  }, 50);
  return () => {
    clearInterval(timer);
    return peak / 1024;
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, (performance.now() - t0) / 1000];
}

const wantWrite = parts.has("write");
/** `--repeat N`: interleaved bare/Cairn runs of the write, read and GetActionResult parts; medians reported. */
const repeat = Math.max(1, arg("--repeat", 3));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
// SHA-256 of the pattern blob (seed 42) as generated, and the one-core ceiling on a fixed buffer.
const [, shaSeconds] = wantWrite
  ? await timed(async () => {
    const h = createHash("sha256");
    for await (const c of patternStream(SIZE, 42, CHUNK)) h.update(c);
    h.digest("hex");
  })
  : [undefined, 0];
// patternStream generation is part of that time; measure the pure hash on a fixed buffer as well.
const shaBuf = new Uint8Array(CHUNK).fill(1);
const [, shaPure] = await timed(() => {
  const h = createHash("sha256");
  for (let i = 0; i < SIZE / CHUNK; i++) h.update(shaBuf);
  h.digest();
  return Promise.resolve();
});

// The bare server (ceiling) in its own process.
const bareChild = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    ...(cpuProfDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}/bare`]),
    new URL(import.meta.url).pathname,
    "--bare-server",
  ],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const bareLine = await (async () => {
  const reader = bareChild.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) throw new Error("bare server exited");
    buf += value;
  }
  reader.releaseLock();
  return buf;
})();
const barePort = (JSON.parse(bareLine.slice(0, bareLine.indexOf("\n"))) as { port: number }).port;

const dataDir = await Deno.makeTempDir({ prefix: "cairn_bench_" });
const filesystem = {
  filesystem: {
    content_path: `${dataDir}/cas/content`,
    temp_path: `${dataDir}/cas/tmp`,
    eviction_policy: { max_bytes: "4gb" },
  },
};
// As config/local.json5: a verify store (size + hash) over the filesystem store; `--no-verify` drops it.
const casSpec = Deno.args.includes("--no-verify")
  ? filesystem
  : { verify: { verify_size: true, verify_hash: true, backend: filesystem } };
const cairn = await startCairnProcess({
  dir: dataDir,
  ...(cpuProfDir === undefined ? {} : { permissions: ["-A", "--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`] }),
  config: {
    stores: [
      { name: "CAS", ...casSpec },
      { name: "AC", memory: { eviction_policy: { max_bytes: "100mb" } } },
      {
        name: "AC_FS",
        filesystem: { content_path: `${dataDir}/ac/content`, temp_path: `${dataDir}/ac/tmp` },
      },
      // As config/local.json5's AC.
      {
        name: "AC_LOCAL",
        completeness_checking: {
          backend: {
            filesystem: { content_path: `${dataDir}/ac2/content`, temp_path: `${dataDir}/ac2/tmp` },
          },
          cas_store: { ref_store: { name: "CAS" } },
        },
      },
    ],
    servers: [{
      listener: {
        http: {
          socket_address: "127.0.0.1:0",
          ...(serverPath === "deno_serve" ? { server: "deno_serve" } : {}),
          ...(windowMiB > 0
            ? {
              advanced_http: {
                experimental_http2_initial_stream_window_size: windowMiB * MiB,
                experimental_http2_initial_connection_window_size: connectionWindowMiB * MiB,
              },
            }
            : {}),
        },
      },
      services: {
        cas: [{ instance_name: "", cas_store: "CAS" }],
        ac: [
          { instance_name: "", ac_store: "AC" },
          { instance_name: "fs", ac_store: "AC_FS" },
          { instance_name: "local", ac_store: "AC_LOCAL" },
        ],
        bytestream: [{ instance_name: "", cas_store: "CAS", max_bytes_per_stream: CHUNK }],
        capabilities: [{ instance_name: "" }],
      },
    }],
  },
});

const lines: string[] = [];
const report = (s: string) => {
  lines.push(s);
  console.log(s);
};

try {
  report(
    `cache bench: CAS ${
      casSpec === filesystem ? "filesystem" : "verify(filesystem)"
    }, ${sizeMiB} MiB blob in ${chunkKiB} KiB messages; server HTTP/2 window ${
      windowMiB
        ? `${windowMiB} MiB per stream, ${connectionWindowMiB} MiB per connection`
        : "Cairn's default (2 MiB)"
    }; h2load runs of ${duration}s`,
  );
  if (wantWrite) {
    report(
      `SHA-256, one core (node:crypto): ${fmt(SIZE / MiB / shaPure)} MB/s ` +
        `(${fmt(SIZE / MiB / shaSeconds)} MB/s including pattern generation)`,
    );

    // The framed WriteRequest stream of a pattern blob, written to a file (h2load streams it from disk; the
    // client is C, so the two shared cores go to the server under test). Each run uploads a new blob.
    const makeUpload = async (seed: number): Promise<{ file: string; digest: Digest }> => {
      const h = createHash("sha256");
      for await (const c of patternStream(SIZE, seed, CHUNK)) h.update(c);
      const digest: Digest = { hash: h.digest("hex"), size: SIZE };
      const name = `uploads/${crypto.randomUUID()}/blobs/${digest.hash}/${digest.size}`;
      const file = `${dataDir}/upload-${seed}.grpc`;
      using f = await Deno.open(file, { write: true, create: true, truncate: true });
      const writer = f.writable.getWriter();
      let offset = 0;
      for await (const data of patternStream(SIZE, seed, CHUNK)) {
        await writer.write(
          writeRequestHead(
            offset === 0 ? name : undefined,
            offset,
            offset + data.length >= SIZE,
            data.length,
          ),
        );
        await writer.write(data);
        offset += data.length;
      }
      await writer.close();
      return { file, digest };
    };
    const once = ["-n", "1", "-c", "1", "-m", "1"];
    // A connection per check: one left without a stream past the server's header timeout gets GOAWAY.
    const stored = async (d: Digest) => {
      const session = connect(cairn.port);
      const s = grpcRequest(
        session,
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
      );
      s.end(frame(toBinary(
        FindMissingBlobsRequestSchema,
        create(FindMissingBlobsRequestSchema, { blobDigests: [{ hash: d.hash, sizeBytes: BigInt(d.size) }] }),
      )));
      const check = await finish(s, true);
      session.close();
      // An empty FindMissingBlobsResponse is a 5-byte frame: the blob is stored.
      if (check.status !== "0" || check.bytes !== 5) {
        throw new Error(`ByteStream Write failed (${check.status} ${check.message}, ${check.bytes} bytes)`);
      }
    };

    // Runs alternate: the same bytes into a bare node:http2 server (the ceiling), then through main.ts.
    const idleRss = await rssKiB(cairn.pid) / 1024;
    const ceilings: number[] = [];
    const rates: number[] = [];
    const bareCpu: number[] = [];
    const cairnCpu: number[] = [];
    let writePeak = 0;
    let blobDigest: Digest | undefined;
    for (let run = 0; run < repeat; run++) {
      const upload = await makeUpload(42 + run);
      const [bareUp, bareCost] = await cpuPerGiB(
        bareChild.pid,
        () => h2load(barePort, "/upload", upload.file, once),
      );
      if (bareUp.succeeded !== 1) throw new Error("bare upload failed");
      bareCpu.push(bareCost);
      const stopRss = sampleRss(cairn.pid);
      const [w, cost] = await cpuPerGiB(
        cairn.pid,
        () => h2load(cairn.port, "/google.bytestream.ByteStream/Write", upload.file, once),
      );
      writePeak = Math.max(writePeak, stopRss());
      cairnCpu.push(cost);
      if (w.succeeded !== 1) throw new Error("ByteStream Write failed");
      await stored(upload.digest);
      await Deno.remove(upload.file);
      ceilings.push(SIZE / MiB / bareUp.seconds);
      rates.push(SIZE / MiB / w.seconds);
      blobDigest = upload.digest;
    }
    const upCeil = median(ceilings);
    const writeRate = median(rates);
    const ratios = rates.map((r, i) => pctOf(r, ceilings[i]!));
    report(
      `bare node:http2 upload (ceiling):   ${fmt(upCeil)} MB/s (runs: ${
        ceilings.map((x) => fmt(x)).join(", ")
      })`,
    );
    report(
      `ByteStream Write: ${fmt(writeRate)} MB/s = ${
        pctOf(writeRate, upCeil)
      } of the bare upload (target >= 75%; ` +
        `runs: ${rates.map((x) => fmt(x)).join(", ")} = ${ratios.join(", ")}); server RSS peak ${
          fmt(writePeak)
        } MiB ` +
        `(idle ${fmt(idleRss)} MiB); server CPU ${fmt(median(cairnCpu), 2)} s/GiB (bare ${
          fmt(median(bareCpu), 2)
        } s/GiB)`,
    );
    const readFile = `${dataDir}/read.grpc`;
    await Deno.writeFile(
      readFile,
      frame(toBinary(
        ReadRequestSchema,
        create(ReadRequestSchema, { resourceName: `blobs/${blobDigest!.hash}/${blobDigest!.size}` }),
      )),
    );
    if (parts.has("read")) {
      // Runs alternate as for writes: the bare download (the ceiling), then the same blob through main.ts.
      const downCeils: number[] = [];
      const readRates: number[] = [];
      const bareReadCpu: number[] = [];
      const readCpu: number[] = [];
      let readPeak = 0;
      for (let run = 0; run < repeat; run++) {
        const [bareDown, bareCost] = await cpuPerGiB(
          bareChild.pid,
          () =>
            h2load(barePort, "/download", readFile, [
              ...once,
              "-H",
              `x-size: ${SIZE}`,
              "-H",
              `x-chunk: ${CHUNK}`,
            ]),
        );
        if (bareDown.succeeded !== 1) throw new Error("bare download failed");
        downCeils.push(bareDown.dataBytes / MiB / bareDown.seconds);
        bareReadCpu.push(bareCost);
        const stopRss = sampleRss(cairn.pid);
        const [r, cost] = await cpuPerGiB(
          cairn.pid,
          () => h2load(cairn.port, "/google.bytestream.ByteStream/Read", readFile, once),
        );
        readPeak = Math.max(readPeak, stopRss());
        readCpu.push(cost);
        const framing = Math.ceil(SIZE / CHUNK) * 16;
        if (r.succeeded !== 1 || r.dataBytes < SIZE || r.dataBytes > SIZE + framing) {
          throw new Error(`ByteStream Read returned ${r.dataBytes} bytes`);
        }
        readRates.push(SIZE / MiB / r.seconds);
      }
      const downCeil = median(downCeils);
      const readRate = median(readRates);
      report(
        `bare node:http2 download (ceiling): ${fmt(downCeil)} MB/s (runs: ${
          downCeils.map((x) => fmt(x)).join(", ")
        })`,
      );
      report(
        `ByteStream Read:  ${fmt(readRate)} MB/s = ${pctOf(readRate, downCeil)} of the bare download (runs: ${
          readRates.map((x) => fmt(x)).join(", ")
        } = ${readRates.map((r, i) => pctOf(r, downCeils[i]!)).join(", ")}); server RSS peak ${
          fmt(readPeak)
        } MiB (target < 300 MiB); server CPU ${fmt(median(readCpu), 2)} s/GiB (bare ${
          fmt(median(bareReadCpu), 2)
        } s/GiB)`,
      );
    }
  }

  const small = connect(cairn.port);
  let failed = 0;
  if (parts.has("fmb")) {
    // FindMissingBlobs of 1,000 digests (half present).
    const present: Digest[] = [];
    for (let i = 0; i < 500; i++) {
      const bytes = new TextEncoder().encode(`bench blob ${i}`);
      present.push(digestOf(bytes));
    }
    {
      const reqs = present.map((d, i) => ({
        digest: { hash: d.hash, sizeBytes: BigInt(d.size) },
        data: new TextEncoder().encode(`bench blob ${i}`),
      }));
      const { BatchUpdateBlobsRequestSchema } = await import(
        "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts"
      );
      const s = grpcRequest(
        small,
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs",
      );
      s.end(
        frame(
          toBinary(BatchUpdateBlobsRequestSchema, create(BatchUpdateBlobsRequestSchema, { requests: reqs })),
        ),
      );
      const res = await finish(s);
      if (res.status !== "0") throw new Error(`BatchUpdateBlobs failed: ${res.status} ${res.message}`);
    }
    const fmbDigests = [
      ...present.map((d) => ({ hash: d.hash, sizeBytes: BigInt(d.size) })),
      ...Array.from(
        { length: 500 },
        (_, i) => ({ hash: createHash("sha256").update(`absent ${i}`).digest("hex"), sizeBytes: 100n }),
      ),
    ];
    const fmbBody = frame(toBinary(
      FindMissingBlobsRequestSchema,
      create(FindMissingBlobsRequestSchema, { blobDigests: fmbDigests }),
    ));
    const fmb = await h2load(
      cairn.port,
      "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
      fmbBody,
      ["-D", String(duration), "-c", "1", "-m", "4"],
    );
    report(
      `FindMissingBlobs x1000 digests: ${fmt(fmb.reqPerSec)} calls/s (${
        fmt(fmb.reqPerSec * 1000)
      } digests/s), ` +
        `p50 ${fmt(fmb.p50ms, 2)} ms, p99 ${fmt(fmb.p99ms, 2)} ms (h2load -c 1 -m 4)`,
    );

    failed += fmb.failed;
  }

  if (parts.has("gar")) {
    // GetActionResult: the outputs go into the CAS, the result into each action cache; then 64 concurrent
    // streams, and one call at a time, against each.
    const action = { hash: createHash("sha256").update("bench action").digest("hex"), sizeBytes: 140n };
    const {
      BatchUpdateBlobsRequestSchema,
      UpdateActionResultRequestSchema,
    } = await import("../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts");
    {
      const s = grpcRequest(
        small,
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs",
      );
      s.end(frame(toBinary(
        BatchUpdateBlobsRequestSchema,
        create(BatchUpdateBlobsRequestSchema, {
          requests: benchOutputs().map((data) => {
            const d = digestOf(data);
            return { digest: { hash: d.hash, sizeBytes: BigInt(d.size) }, data };
          }),
        }),
      )));
      const res = await finish(s);
      if (res.status !== "0") throw new Error(`BatchUpdateBlobs failed: ${res.status} ${res.message}`);
    }
    const caches = [
      { label: "memory AC", instanceName: "" },
      { label: "filesystem AC", instanceName: "fs" },
      { label: "completeness_checking(filesystem) AC (config/local.json5)", instanceName: "local" },
    ];
    const garPath = "/build.bazel.remote.execution.v2.ActionCache/GetActionResult";
    const bodies = new Map<string, Uint8Array>();
    for (const { instanceName } of caches) {
      const s = grpcRequest(small, "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult");
      s.end(frame(toBinary(
        UpdateActionResultRequestSchema,
        create(UpdateActionResultRequestSchema, {
          instanceName,
          actionDigest: action,
          actionResult: benchActionResult(),
        }),
      )));
      const res = await finish(s);
      if (res.status !== "0") throw new Error(`UpdateActionResult failed: ${res.status} ${res.message}`);
      const body = frame(toBinary(
        GetActionResultRequestSchema,
        create(GetActionResultRequestSchema, { instanceName, actionDigest: action }),
      ));
      const g = grpcRequest(small, garPath);
      g.end(body);
      const got = await finish(g, true);
      if (got.status !== "0") {
        throw new Error(`GetActionResult (instance "${instanceName}") failed: ${got.status} ${got.message}`);
      }
      bodies.set(instanceName, body);
    }
    const h2args = ["-D", String(duration), "-c", "4", "-m", "16"];
    const sequential = ["-D", String(Math.max(2, Math.round(duration / 2))), "-c", "1", "-m", "1"];
    const warm = ["-n", "5000", "-c", "4", "-m", "16"];
    await h2load(barePort, "/unary", bodies.get("")!, warm);
    for (const body of bodies.values()) await h2load(cairn.port, garPath, body, warm);
    const bare: H2loadResult[] = [];
    const ours = new Map<string, H2loadResult[]>(caches.map((c) => [c.instanceName, []]));
    const oneByOne = new Map<string, H2loadResult[]>(caches.map((c) => [c.instanceName, []]));
    for (let run = 0; run < repeat; run++) {
      bare.push(await h2load(barePort, "/unary", bodies.get("")!, h2args));
      for (const { instanceName } of caches) {
        ours.get(instanceName)!.push(await h2load(cairn.port, garPath, bodies.get(instanceName)!, h2args));
      }
      for (const { instanceName } of caches) {
        oneByOne.get(instanceName)!.push(
          await h2load(cairn.port, garPath, bodies.get(instanceName)!, sequential),
        );
      }
    }
    const figures = (xs: H2loadResult[]) => ({
      reqPerSec: median(xs.map((x) => x.reqPerSec)),
      p50ms: median(xs.map((x) => x.p50ms)),
      p99ms: median(xs.map((x) => x.p99ms)),
      runs: xs.map((x) => `${fmt(x.reqPerSec)}/s p99 ${fmt(x.p99ms, 1)}`).join(", "),
    });
    if (bare.some((x) => x.succeeded === 0)) throw new Error("the bare unary server answered nothing");
    const bareUnary = figures(bare);
    report(
      `bare node:http2 unary (ceiling): ${fmt(bareUnary.reqPerSec)} calls/s, p50 ${
        fmt(bareUnary.p50ms, 2)
      } ms, ` +
        `p99 ${fmt(bareUnary.p99ms, 2)} ms (medians of runs: ${bareUnary.runs})`,
    );
    const memoryRate = figures(ours.get("")!).reqPerSec;
    for (const { label, instanceName } of caches) {
      const runs = ours.get(instanceName)!;
      const gar = figures(runs);
      const seq = figures(oneByOne.get(instanceName)!);
      failed += runs.reduce((n, x) => n + x.failed, 0) +
        oneByOne.get(instanceName)!.reduce((n, x) => n + x.failed, 0);
      const vsMemory = instanceName === ""
        ? ""
        : `, ${pctOf(gar.reqPerSec, memoryRate)} of the memory AC (target >= 80%)`;
      report(
        `GetActionResult, ${label} (h2load -c 4 -m 16): ${fmt(gar.reqPerSec)} calls/s = ${
          pctOf(gar.reqPerSec, bareUnary.reqPerSec)
        } of the bare unary (target >= 80%)${vsMemory}, p50 ${fmt(gar.p50ms, 2)} ms, p99 ${
          fmt(gar.p99ms, 2)
        } ms (target < 20 ms) (medians of runs: ${gar.runs}); one at a time (-c 1 -m 1): p50 ${
          fmt(seq.p50ms * 1000)
        } µs, ${fmt(seq.reqPerSec)} calls/s`,
      );
    }
  }
  small.close();
  if (failed > 0) report(`WARNING: h2load saw ${failed} failed requests`);
} finally {
  await cairn.stop(60_000);
  try {
    bareChild.kill("SIGTERM");
  } catch { /* already gone */ }
  await bareChild.status;
  await bareChild.stdout.cancel().catch(() => {});
  await Deno.remove(dataDir, { recursive: true }).catch(() => {});
}
