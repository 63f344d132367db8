// Memory bombs against the real `main.ts` on loopback: a few KiB of request must not become gigabytes of
// server memory. Each attack asserts its gRPC code and that the server's peak RSS (VmHWM from
// /proc/<pid>/status) stays far below what the attack declares, while a victim client keeps being answered
// within 1 s. The stores are those of config/local.json5 (verified filesystem CAS, completeness-checked
// filesystem AC). See tests/security/README.md for the limits.
import { loadScaledBound } from "../fixtures/wait.ts";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import JSON5 from "json5";
import { type Client, ConnectError, createClient } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ActionCache,
  ActionResultSchema,
  Capabilities,
  Compressor_Value,
  ContentAddressableStorage,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream } from "../../src/gen/google/bytestream/bytestream_pb.ts";
import { type Digest, digestOf } from "../../src/digest/digest.ts";
import { toProto } from "../../src/service/cas_service.ts";
import { createGrpcClientTransport } from "../../src/transport/grpc_client.ts";
import { Code } from "../../src/util/error.ts";
import { MAX_DECODED_MESSAGE_BYTES } from "../../src/util/limits.ts";
import { patternBytes } from "../../src/util/streams.ts";
import { type CairnProcess, REPO_ROOT, startCairnProcess } from "../fixtures/cairn_process.ts";

const MiB = 1024 * 1024;
/** Peak RSS growth allowed over the baseline for any attack below. */
const RSS_BUDGET = 300 * MiB;

/** config/local.json5 reduced to its cache: the same CAS and AC stores, one public server. */
async function localCacheConfig(): Promise<Record<string, unknown>> {
  const local = JSON5.parse(await Deno.readTextFile(`${REPO_ROOT}config/local.json5`)) as {
    stores: Record<string, unknown>[];
    servers: { name: string; services: Record<string, unknown> }[];
  };
  const server = local.servers.find((s) => s.name === "public")!;
  const { execution: _e, capabilities: _c, ...services } = server.services;
  return {
    stores: local.stores.filter((s) => s.name === "CAS" || s.name === "AC"),
    servers: [{ ...server, services: { ...services, capabilities: [{ instance_name: "" }] } }],
  };
}

const ENV = { CAIRN_LISTEN: "127.0.0.1:0" };

/** VmHWM (peak RSS) of a process, in bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (!kb) throw new Error(`No VmHWM in /proc/${pid}/status`);
  return Number(kb[1]) * 1024;
}

/** A zstd frame of `mib` MiB of zeros (a few KiB), made without holding the plain bytes. */
async function zeroBomb(mib: number): Promise<Uint8Array> {
  const c = zlib.createZstdCompress();
  const chunks: Uint8Array[] = [];
  c.on("data", (x: Uint8Array) => chunks.push(x));
  const zero = new Uint8Array(MiB);
  for (let i = 0; i < mib; i++) c.write(zero);
  await new Promise((r) => c.end(r));
  return new Uint8Array(Buffer.concat(chunks));
}

async function codeOf(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ConnectError) return { code: err.code, message: err.rawMessage };
    throw err;
  }
  return { code: Code.Ok, message: "" };
}

async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

interface Clients {
  cas: Client<typeof ContentAddressableStorage>;
  bs: Client<typeof ByteStream>;
  ac: Client<typeof ActionCache>;
  caps: Client<typeof Capabilities>;
}

function clients(url: string): Clients {
  // Each client its own connection, so the victim does not share a connection with the attacker.
  return {
    cas: createClient(ContentAddressableStorage, createGrpcClientTransport(url)),
    bs: createClient(ByteStream, createGrpcClientTransport(url)),
    ac: createClient(ActionCache, createGrpcClientTransport(url)),
    caps: createClient(Capabilities, createGrpcClientTransport(url)),
  };
}

/** Writes `data` in 64 KiB requests under `resourceName`. */
function writeAll(bs: Client<typeof ByteStream>, resourceName: string, data: Uint8Array) {
  return bs.write((async function* () {
    const step = 64 * 1024;
    for (let pos = 0; pos === 0 || pos < data.byteLength; pos += step) {
      const chunk = data.subarray(pos, pos + step);
      yield {
        resourceName: pos === 0 ? resourceName : "",
        writeOffset: BigInt(pos),
        data: chunk,
        finishWrite: pos + step >= data.byteLength,
      };
    }
  })());
}

/** A victim: GetCapabilities and a small ByteStream read in a loop, on its own connections; each call timed. */
function startVictim(url: string, blob: Digest) {
  const v = clients(url);
  let stop = false;
  let worst = 0;
  let stepWorst = 0;
  let calls = 0;
  const failures: string[] = [];
  let warmed: () => void = () => {};
  const warm = new Promise<void>((resolve) => (warmed = resolve));
  /** Times one call; the first round (opening the connections) is not counted. */
  const timed = async <T>(call: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const out = await call();
    const ms = performance.now() - t0;
    if (calls > 0) {
      worst = Math.max(worst, ms);
      stepWorst = Math.max(stepWorst, ms);
    }
    return out;
  };
  const loop = (async () => {
    while (!stop) {
      try {
        await timed(() => v.caps.getCapabilities({ instanceName: "" }));
        const got = await timed(() => drain(v.bs.read({ resourceName: `blobs/${blob.hash}/${blob.size}` })));
        assert.equal(got.reduce((n, r) => n + r.data.byteLength, 0), blob.size);
      } catch (err) {
        failures.push(String(err));
      }
      if (calls++ === 0) warmed();
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    /** Resolves after the first (uncounted) round. */
    warm,
    /** The worst wait since the last call (for per-attack figures). */
    takeWorst() {
      const w = stepWorst;
      stepWorst = 0;
      return w;
    },
    async stop() {
      stop = true;
      await loop;
      return { worst, calls, failures };
    },
  };
}

Deno.test({
  name:
    "Memory bombs: zstd, batches, negative sizes, oversized trees and names stay bounded; a victim is served",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const cairn: CairnProcess = await startCairnProcess({ config: await localCacheConfig(), env: ENV });
    try {
      const { cas, bs, ac } = clients(cairn.url);
      const small = new TextEncoder().encode("the victim's small blob");
      const sd = digestOf(small);
      assert.equal(
        (await cas.batchUpdateBlobs({ requests: [{ digest: toProto(sd), data: small }] }))
          .responses[0]?.status?.code,
        Code.Ok,
      );
      const big = await patternBytes(64 * MiB, 5); // a real blob, larger than the 16 MiB message cap
      const bd = digestOf(big);
      assert.equal(
        (await writeAll(bs, `uploads/setup/blobs/${bd.hash}/${bd.size}`, big)).committedSize,
        BigInt(bd.size),
      );
      // Made before the victim starts: compressing blocks this process's event loop (and the victim's timing).
      const bomb = await zeroBomb(512); // 512 MiB of zeros, ~16 KiB of zstd
      const baseline = await peakRss(cairn.pid);
      const victim = startVictim(cairn.url, sd);
      await victim.warm; // connections up before the first attack
      const checkRss = async (what: string) => {
        const grown = (await peakRss(cairn.pid)) - baseline;
        console.log(
          `${what}: peak RSS +${(grown / MiB).toFixed(0)} MiB, victim worst ${
            victim.takeWorst().toFixed(0)
          } ms`,
        );
        assert.ok(grown < RSS_BUDGET, `${what}: peak RSS grew by ${(grown / MiB).toFixed(0)} MiB`);
      };

      await t.step(
        "zstd bomb over ByteStream: 2 GiB declared, stops with INVALID_ARGUMENT, RSS bounded",
        async () => {
          // 512 MiB of zeros (~16 KiB compressed) under a 2 GiB digest: inflated as it is stored, then refused.
          const fake = { hash: "ab".repeat(32), size: 2 * 1024 * MiB };
          const r1 = await codeOf(
            writeAll(bs, `uploads/b1/compressed-blobs/zstd/${fake.hash}/${fake.size}`, bomb),
          );
          assert.equal(r1.code, Code.InvalidArgument, r1.message);
          await checkRss("zstd bomb, 2 GiB declared");
          // The same bomb under a 16 MiB digest: inflating stops as soon as the output passes 16 MiB.
          const r2 = await codeOf(
            writeAll(bs, `uploads/b2/compressed-blobs/zstd/${fake.hash}/${16 * MiB}`, bomb),
          );
          assert.equal(r2.code, Code.InvalidArgument, r2.message);
          assert.match(r2.message, /exceeds the expected 16777216 bytes/);
          await checkRss("zstd bomb past its declared size");
        },
      );

      await t.step(
        "zstd bombs inside BatchUpdateBlobs: per-blob errors, declared sizes count, RSS bounded",
        async () => {
          // 60 bombs of 512 MiB each under small declared sizes: each inflates only up to its 60 KiB digest.
          const requests = Array.from({ length: 60 }, (_, i) => ({
            digest: toProto({ hash: i.toString(16).padStart(64, "0"), size: 60 * 1024 }),
            data: bomb,
            compressor: Compressor_Value.ZSTD,
          }));
          const res = await cas.batchUpdateBlobs({ requests });
          assert.equal(res.responses.length, 60);
          for (const r of res.responses) {
            assert.equal(r.status?.code, Code.InvalidArgument, r.status?.message ?? "");
          }
          // Declared sizes above the batch limit: refused as a whole before anything is inflated.
          const huge = await codeOf(cas.batchUpdateBlobs({
            requests: [{
              digest: toProto({ hash: "cd".repeat(32), size: 512 * MiB }),
              data: bomb,
              compressor: Compressor_Value.ZSTD,
            }],
          }));
          assert.equal(huge.code, Code.InvalidArgument, huge.message);
          await checkRss("zstd bombs in BatchUpdateBlobs");
        },
      );

      await t.step("negative sizes are INVALID_ARGUMENT everywhere", async () => {
        const negative = { hash: bd.hash, sizeBytes: -BigInt(bd.size) };
        // With the negative digest the batch would add up to 0 bytes and serve the 64 MiB blob in one message.
        const read = await codeOf(cas.batchReadBlobs({ digests: [toProto(bd), negative] }));
        assert.equal(read.code, Code.InvalidArgument, read.message);
        const alone = await cas.batchReadBlobs({ digests: [negative] });
        assert.equal(alone.responses[0]?.status?.code, Code.InvalidArgument);
        assert.equal(
          (await codeOf(cas.findMissingBlobs({ blobDigests: [negative] }))).code,
          Code.InvalidArgument,
        );
        assert.equal(
          (await codeOf(drain(bs.read({ resourceName: `blobs/${bd.hash}/-${bd.size}` })))).code,
          Code.InvalidArgument,
        );
        assert.equal(
          (await codeOf(writeAll(bs, `uploads/n1/blobs/${bd.hash}/-1`, new Uint8Array(1)))).code,
          Code.InvalidArgument,
        );
        assert.equal(
          (await codeOf(ac.getActionResult({ actionDigest: negative }))).code,
          Code.InvalidArgument,
        );
        assert.equal(
          (await codeOf(drain(cas.getTree({ rootDigest: negative })))).code,
          Code.InvalidArgument,
        );
        await checkRss("negative sizes");
      });

      await t.step(
        "an AC entry whose tree_digest names a 64 MiB blob: refused before reading, bounded",
        async () => {
          const action = digestOf(new TextEncoder().encode("action with a huge tree"));
          await ac.updateActionResult({
            actionDigest: toProto(action),
            actionResult: {
              outputFiles: [{ path: "out/f", digest: toProto(bd) }],
              outputDirectories: Array.from(
                { length: 20 },
                (_, i) => ({ path: `out/d${i}`, treeDigest: toProto(bd) }),
              ),
            },
          });
          for (const inlineOutputFiles of [[], ["out/f"]]) {
            const r = await codeOf(ac.getActionResult({ actionDigest: toProto(action), inlineOutputFiles }));
            assert.equal(r.code, Code.ResourceExhausted, r.message);
            assert.match(
              r.message,
              new RegExp(`${bd.hash}-${bd.size}.*limit of ${MAX_DECODED_MESSAGE_BYTES}`),
            );
          }
          const tree = await codeOf(drain(cas.getTree({ rootDigest: toProto(bd), pageSize: 1_000_000 })));
          assert.equal(tree.code, Code.ResourceExhausted, tree.message);
          await checkRss("oversized tree");
        },
      );

      await t.step("a 100 KB instance name is INVALID_ARGUMENT with a short message", async () => {
        const name = "i".repeat(100_000);
        for (
          // Thunks: each call starts only when awaited, so no rejection is ever left unhandled.
          const call of [
            () => cas.findMissingBlobs({ instanceName: name }),
            () => ac.getActionResult({ instanceName: name, actionDigest: toProto(sd) }),
            () => drain(bs.read({ resourceName: `${name}/blobs/${sd.hash}/${sd.size}` })),
          ]
        ) {
          const r = await codeOf(call());
          assert.equal(r.code, Code.InvalidArgument, r.message.slice(0, 300));
          assert.ok(r.message.length < 400, `message of ${r.message.length} characters`);
        }
      });

      const v = await victim.stop();
      assert.deepEqual(v.failures, []);
      assert.ok(v.calls > 0);
      // 1 s, scaled by the load per core on a shared machine (see loadScaledBound).
      const bound = loadScaledBound(1000);
      assert.ok(
        v.worst < bound,
        `a victim call took ${v.worst.toFixed(0)} ms (bound ${bound.toFixed(0)} ms)`,
      );
      console.log(
        `victim: ${v.calls} rounds, slowest call ${v.worst.toFixed(0)} ms; peak RSS +${
          (((await peakRss(cairn.pid)) - baseline) / MiB).toFixed(0)
        } MiB over baseline`,
      );
    } finally {
      await cairn.stop();
    }
  },
});

Deno.test({
  name: "HTTP cache blobs and AC entries survive a restart with the default config's stores",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cairn_http_restart_" });
    try {
      const config = await localCacheConfig();
      const blob = new TextEncoder().encode("an HTTP cache blob");
      const d = digestOf(blob);
      const result = toBinary(
        ActionResultSchema,
        create(ActionResultSchema, { outputFiles: [{ path: "out", digest: toProto(d) }] }),
      );
      const acHash = digestOf(new TextEncoder().encode("an action")).hash;
      let cairn = await startCairnProcess({ config, env: ENV, dir });
      try {
        assert.equal(
          (await fetch(`${cairn.httpUrl}/cas/${d.hash}`, { method: "PUT", body: blob })).status,
          200,
        );
        assert.equal(
          (await fetch(`${cairn.httpUrl}/ac/${acHash}`, { method: "PUT", body: result })).status,
          200,
        );
      } finally {
        await cairn.stop();
      }
      cairn = await startCairnProcess({ config, env: ENV, dir });
      try {
        const got = await fetch(`${cairn.httpUrl}/cas/${d.hash}`);
        assert.equal(got.status, 200);
        assert.deepEqual(new Uint8Array(await got.arrayBuffer()), blob);
        const entry = await fetch(`${cairn.httpUrl}/ac/${acHash}`);
        assert.equal(entry.status, 200);
        assert.deepEqual(new Uint8Array(await entry.arrayBuffer()), result);
      } finally {
        await cairn.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
