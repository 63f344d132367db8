// The real `main.ts` process serving the remote cache: gRPC over h2c from two independent client
// implementations (connect-node and @grpc/grpc-js), Connect JSON over HTTP/1.1, TLS and mTLS, /status,
// two instance names with separate stores, and bad input (unknown instance, malformed names, wrong hashes,
// bad offsets, a client vanishing mid-upload).
//
// Run: deno test --allow-all tests/server_test.ts
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import grpc from "@grpc/grpc-js";
import {
  ActionCache,
  ActionResultSchema,
  Capabilities,
  ContentAddressableStorage,
  DigestFunction_Value,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream, type WriteRequest } from "../src/gen/google/bytestream/bytestream_pb.ts";
import { Health, HealthCheckResponse_ServingStatus } from "../src/gen/grpc/health/v1/health_pb.ts";
import { type Digest, digestOf } from "../src/digest/digest.ts";
import { formatReadResourceName, formatWriteResourceName } from "../src/digest/resource_name.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";
import { patternBytes } from "../src/util/streams.ts";
import { type CairnProcess, memoryCacheConfig, startCairnProcess } from "./fixtures/cairn_process.ts";
import { grpcJsClient, makeTestCerts } from "./fixtures/transport_fixtures.ts";

const enc = new TextEncoder();
const proto = (d: Digest) => ({ hash: d.hash, sizeBytes: BigInt(d.size) });
const readName = (d: Digest, instanceName = "") =>
  formatReadResourceName({ instanceName, compressor: "identity", digest: d });
const writeName = (d: Digest, instanceName = "") =>
  formatWriteResourceName({ instanceName, compressor: "identity", digest: d, uuid: crypto.randomUUID() });

/** The connect-node clients of one endpoint. */
interface Clients {
  cas: Client<typeof ContentAddressableStorage>;
  ac: Client<typeof ActionCache>;
  bs: Client<typeof ByteStream>;
  caps: Client<typeof Capabilities>;
  health: Client<typeof Health>;
}

function connectClients(url: string, tls?: Parameters<typeof createGrpcClientTransport>[1]): Clients {
  const transport = createGrpcClientTransport(url, tls);
  return {
    cas: createClient(ContentAddressableStorage, transport),
    ac: createClient(ActionCache, transport),
    bs: createClient(ByteStream, transport),
    caps: createClient(Capabilities, transport),
    health: createClient(Health, transport),
  };
}

/** The ConnectError a promise rejects with (fails when it resolves). */
async function connectError(p: Promise<unknown>): Promise<ConnectError> {
  const e = await p.then(() => undefined, (err) => ConnectError.from(err));
  assert.ok(e, "the call should have failed");
  return e;
}

async function* chunksOf(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < bytes.length; off += size) yield bytes.subarray(off, off + size);
}

async function bsWrite(bs: Clients["bs"], name: string, bytes: Uint8Array, chunk = 256 * 1024) {
  return await bs.write((async function* () {
    let offset = 0;
    for await (const data of chunksOf(bytes, chunk)) {
      yield { resourceName: offset === 0 ? name : "", writeOffset: BigInt(offset), data, finishWrite: false };
      offset += data.length;
    }
    yield { resourceName: offset === 0 ? name : "", writeOffset: BigInt(offset), finishWrite: true };
  })());
}

async function bsRead(bs: Clients["bs"], name: string, readOffset = 0n): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const r of bs.read({ resourceName: name, readOffset })) {
    parts.push(r.data);
    total += r.data.length;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

async function missing(cas: Clients["cas"], instanceName: string, ds: Digest[]): Promise<string[]> {
  const r = await cas.findMissingBlobs({ instanceName, blobDigests: ds.map(proto) });
  return r.missingBlobDigests.map((d) => d.hash);
}

// --- grpc-js (an independent HTTP/2 + gRPC implementation) ---------------------------------------------

// deno-lint-ignore no-explicit-any
type GrpcJs = any;
const CasJs = grpcJsClient(ContentAddressableStorage);
const AcJs = grpcJsClient(ActionCache);
const BsJs = grpcJsClient(ByteStream);
const CapsJs = grpcJsClient(Capabilities);
const HealthJs = grpcJsClient(Health);

function unary<T>(client: GrpcJs, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method](req, (err: Error | null, res: T) => err ? reject(err) : resolve(res));
  });
}

function grpcJsWrite(client: GrpcJs, reqs: Partial<WriteRequest>[]): Promise<{ committedSize: bigint }> {
  return new Promise((resolve, reject) => {
    const call = client.write((err: Error | null, res: { committedSize: bigint }) =>
      err ? reject(err) : resolve(res)
    );
    for (const r of reqs) call.write(r);
    call.end();
  });
}

function grpcJsRead(client: GrpcJs, resourceName: string): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = [];
    const call = client.read({ resourceName });
    call.on("data", (r: { data: Uint8Array }) => parts.push(r.data));
    call.on("error", reject);
    call.on("end", () => {
      const total = parts.reduce((n, p) => n + p.length, 0);
      const out = new Uint8Array(total);
      let off = 0;
      for (const p of parts) {
        out.set(p, off);
        off += p.length;
      }
      resolve(out);
    });
  });
}

// --- the h2c server ----------------------------------------------------------------------------------

Deno.test("main.ts over h2c: the remote cache services, two clients, Connect JSON, /status, bad input", async (t) => {
  const cairn: CairnProcess = await startCairnProcess({
    config: memoryCacheConfig({ instances: ["", "main"] }),
  });
  const c = connectClients(cairn.url);
  try {
    assert.match(cairn.logs(), /^cairn: bazel flags: --remote_cache=grpc:\/\/127\.0\.0\.1:\d+$/m);

    await t.step("connect-node: Capabilities and Health", async () => {
      const caps = await c.caps.getCapabilities({ instanceName: "" });
      assert.ok(caps.cacheCapabilities?.digestFunctions.includes(DigestFunction_Value.SHA256));
      assert.ok((caps.cacheCapabilities?.maxBatchTotalSizeBytes ?? 0n) > 0n);
      assert.equal(
        (await c.caps.getCapabilities({ instanceName: "main" })).cacheCapabilities !== undefined,
        true,
      );
      assert.equal((await c.health.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
    });

    await t.step("connect-node: FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs", async () => {
      const blobs = ["alpha", "beta", "gamma"].map((s) => enc.encode(`${s} ${crypto.randomUUID()}`));
      const ds = blobs.map((b) => digestOf(b));
      assert.deepEqual(await missing(c.cas, "", ds), ds.map((d) => d.hash));
      const up = await c.cas.batchUpdateBlobs({
        instanceName: "",
        requests: blobs.map((data, i) => ({ digest: proto(ds[i]!), data })),
      });
      assert.deepEqual(up.responses.map((r) => r.status?.code ?? 0), [0, 0, 0]);
      assert.deepEqual(await missing(c.cas, "", ds), []);
      const unknown = digestOf(enc.encode(`never stored ${crypto.randomUUID()}`));
      const read = await c.cas.batchReadBlobs({ instanceName: "", digests: [...ds, unknown].map(proto) });
      assert.equal(read.responses.length, 4);
      for (const [i, b] of blobs.entries()) {
        assert.equal(read.responses[i]?.status?.code ?? 0, 0);
        assert.deepEqual(read.responses[i]?.data, b);
      }
      assert.equal(read.responses[3]?.status?.code, Code.NotFound);
    });

    await t.step(
      "connect-node: ByteStream write and read of a 6 MiB blob, and a read at an offset",
      async () => {
        const blob = await patternBytes(6 * 1024 * 1024 + 123, 7);
        const d = digestOf(blob);
        const w = await bsWrite(c.bs, writeName(d), blob);
        assert.equal(w.committedSize, BigInt(d.size));
        assert.deepEqual(await missing(c.cas, "", [d]), []);
        const back = await bsRead(c.bs, readName(d));
        assert.equal(back.length, blob.length);
        assert.ok(digestOf(back).hash === d.hash, "read back bytes differ");
        const tail = await bsRead(c.bs, readName(d), BigInt(d.size - 1000));
        assert.deepEqual(tail, blob.subarray(d.size - 1000));
        // A second upload of a present blob short-circuits with committed_size = size.
        const again = await bsWrite(c.bs, writeName(d), blob.subarray(0, 1024 * 1024));
        assert.equal(again.committedSize, BigInt(d.size));
      },
    );

    await t.step("connect-node: UpdateActionResult and GetActionResult", async () => {
      const action = digestOf(enc.encode(`action ${crypto.randomUUID()}`));
      const stdout = enc.encode("hello from the action\n");
      const result = {
        exitCode: 0,
        stdoutRaw: stdout,
        stdoutDigest: proto(digestOf(stdout)),
        outputFiles: [{ path: "out/a.txt", digest: proto(digestOf(stdout)), isExecutable: false }],
      };
      const miss = await connectError(
        c.ac.getActionResult({ instanceName: "", actionDigest: proto(action) }),
      );
      assert.equal(miss.code, Code.NotFound);
      await c.cas.batchUpdateBlobs({
        instanceName: "",
        requests: [{ digest: proto(digestOf(stdout)), data: stdout }],
      });
      const stored = await c.ac.updateActionResult({
        instanceName: "",
        actionDigest: proto(action),
        actionResult: result,
      });
      assert.equal(stored.outputFiles[0]?.path, "out/a.txt");
      const got = await c.ac.getActionResult({ instanceName: "", actionDigest: proto(action) });
      assert.equal(got.exitCode, 0);
      assert.equal(got.outputFiles[0]?.path, "out/a.txt");
      assert.equal(got.outputFiles[0]?.digest?.hash, digestOf(stdout).hash);
      assert.equal(got.stdoutDigest?.hash, digestOf(stdout).hash);
    });

    await t.step("grpc-js: the same services through an independent client", async () => {
      const addr = `127.0.0.1:${cairn.port}`;
      const creds = grpc.credentials.createInsecure();
      const clients: GrpcJs[] = [CasJs, AcJs, BsJs, CapsJs, HealthJs].map((C) => new C(addr, creds));
      const [cas, ac, bs, caps, health] = clients;
      try {
        const cap = await unary<{ cacheCapabilities?: { digestFunctions: number[] } }>(
          caps,
          "getCapabilities",
          { instanceName: "main" },
        );
        assert.ok(cap.cacheCapabilities?.digestFunctions.includes(DigestFunction_Value.SHA256));
        assert.equal(
          (await unary<{ status: number }>(health, "check", {})).status,
          HealthCheckResponse_ServingStatus.SERVING,
        );

        const small = enc.encode(`grpc-js ${crypto.randomUUID()}`);
        const sd = digestOf(small);
        const fm = await unary<{ missingBlobDigests: { hash: string }[] }>(cas, "findMissingBlobs", {
          instanceName: "main",
          blobDigests: [proto(sd)],
        });
        assert.deepEqual(fm.missingBlobDigests.map((d) => d.hash), [sd.hash]);
        const up = await unary<{ responses: { status?: { code: number } }[] }>(cas, "batchUpdateBlobs", {
          instanceName: "main",
          requests: [{ digest: proto(sd), data: small }],
        });
        assert.equal(up.responses[0]?.status?.code ?? 0, 0);
        const rd = await unary<{ responses: { data: Uint8Array }[] }>(cas, "batchReadBlobs", {
          instanceName: "main",
          digests: [proto(sd)],
        });
        assert.deepEqual(new Uint8Array(rd.responses[0]?.data ?? []), small);

        const blob = await patternBytes(3 * 1024 * 1024 + 5, 11);
        const d = digestOf(blob);
        const name = writeName(d, "main");
        const reqs: Partial<WriteRequest>[] = [];
        for (let off = 0; off < blob.length; off += 64 * 1024) {
          const data = blob.subarray(off, off + 64 * 1024);
          reqs.push({
            resourceName: off === 0 ? name : "",
            writeOffset: BigInt(off),
            data,
            finishWrite: off + data.length >= blob.length,
          });
        }
        const w = await grpcJsWrite(bs, reqs);
        assert.equal(BigInt(w.committedSize), BigInt(d.size));
        const back = await grpcJsRead(bs, readName(d, "main"));
        assert.equal(digestOf(back).hash, d.hash);

        const action = digestOf(enc.encode(`grpc-js action ${crypto.randomUUID()}`));
        await unary(ac, "updateActionResult", {
          instanceName: "main",
          actionDigest: proto(action),
          actionResult: { exitCode: 3, stderrRaw: enc.encode("oops") },
        });
        const got = await unary<{ exitCode: number }>(ac, "getActionResult", {
          instanceName: "main",
          actionDigest: proto(action),
        });
        assert.equal(got.exitCode, 3);
        const err = await unary(ac, "getActionResult", {
          instanceName: "main",
          actionDigest: proto(digestOf(enc.encode("no such action"))),
        }).then(() => undefined, (e: { code: number }) => e);
        assert.equal(err?.code, grpc.status.NOT_FOUND);
      } finally {
        for (const cl of clients) cl.close();
      }
    });

    await t.step("Connect JSON over HTTP/1.1 with fetch", async () => {
      const res = await fetch(
        `${cairn.httpUrl}/build.bazel.remote.execution.v2.Capabilities/GetCapabilities`,
        { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({}) },
      );
      assert.equal(res.status, 200);
      const caps = await res.json();
      assert.ok(caps.cacheCapabilities.digestFunctions.includes("SHA256"), JSON.stringify(caps));

      const blob = enc.encode(`json ${crypto.randomUUID()}`);
      const d = digestOf(blob);
      const post = (method: string, body: unknown) =>
        fetch(`${cairn.httpUrl}/build.bazel.remote.execution.v2.ContentAddressableStorage/${method}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
      const digest = { hash: d.hash, sizeBytes: String(d.size) };
      let r = await post("FindMissingBlobs", { instanceName: "main", blobDigests: [digest] });
      assert.equal(r.status, 200);
      assert.deepEqual((await r.json()).missingBlobDigests, [digest]);
      r = await post("BatchUpdateBlobs", {
        instanceName: "main",
        requests: [{ digest, data: btoa(String.fromCharCode(...blob)) }],
      });
      assert.equal(r.status, 200);
      await r.body?.cancel();
      r = await post("FindMissingBlobs", { instanceName: "main", blobDigests: [digest] });
      assert.deepEqual((await r.json()).missingBlobDigests ?? [], []);

      r = await post("FindMissingBlobs", { instanceName: "nope", blobDigests: [digest] });
      assert.equal(r.status, 400);
      const e = await r.json();
      assert.equal(e.code, "invalid_argument");
      assert.match(e.message, /"nope"/);
    });

    await t.step("/status answers 200 JSON", async () => {
      const res = await fetch(`${cairn.httpUrl}/status`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /json/);
      const body = await res.json();
      assert.equal(body.status, "ok", JSON.stringify(body));
    });

    await t.step('instances "" and "main" have separate stores', async () => {
      const blob = enc.encode(`only in "" ${crypto.randomUUID()}`);
      const d = digestOf(blob);
      await c.cas.batchUpdateBlobs({ instanceName: "", requests: [{ digest: proto(d), data: blob }] });
      assert.deepEqual(await missing(c.cas, "", [d]), []);
      assert.deepEqual(await missing(c.cas, "main", [d]), [d.hash]);
      const notFound = await connectError(bsRead(c.bs, readName(d, "main")));
      assert.equal(notFound.code, Code.NotFound);

      const action = digestOf(enc.encode(`only in main ${crypto.randomUUID()}`));
      await c.ac.updateActionResult({
        instanceName: "main",
        actionDigest: proto(action),
        actionResult: { exitCode: 0 },
      });
      assert.equal(
        (await c.ac.getActionResult({ instanceName: "main", actionDigest: proto(action) })).exitCode,
        0,
      );
      const e = await connectError(c.ac.getActionResult({ instanceName: "", actionDigest: proto(action) }));
      assert.equal(e.code, Code.NotFound);
    });

    await t.step("an unknown instance is refused with the list of instances", async () => {
      const d = digestOf(enc.encode("x"));
      // One call at a time: a call made up front that fails before its turn would be an unhandled rejection.
      for (
        const call of [
          () => c.cas.findMissingBlobs({ instanceName: "nope", blobDigests: [proto(d)] }),
          () => c.ac.getActionResult({ instanceName: "nope", actionDigest: proto(d) }),
          () => bsRead(c.bs, readName(d, "nope")),
        ]
      ) {
        const e = await connectError(call());
        assert.equal(e.code, Code.InvalidArgument, e.message);
        assert.match(e.rawMessage, /"nope"/);
        assert.match(e.rawMessage, /"", "main"/);
      }
    });

    await t.step("a malformed resource name is INVALID_ARGUMENT", async () => {
      for (
        const name of [
          "blobs/xyz/12",
          "blobs/" + "a".repeat(64),
          "blobs/" + "a".repeat(64) + "/-1",
          "nonsense",
        ]
      ) {
        const e = await connectError(bsRead(c.bs, name));
        assert.equal(e.code, Code.InvalidArgument, `${name}: ${e.message}`);
      }
      const w = await connectError(bsWrite(c.bs, "uploads/not-a-resource", enc.encode("abc")));
      assert.equal(w.code, Code.InvalidArgument, w.message);
    });

    await t.step("a write whose bytes do not match the digest is refused and nothing is stored", async () => {
      const claimed = digestOf(enc.encode(`claimed ${crypto.randomUUID()}`));
      const wrong = new Uint8Array(claimed.size).fill(0x41);
      const e = await connectError(bsWrite(c.bs, writeName(claimed), wrong));
      assert.equal(e.code, Code.InvalidArgument, e.message);
      assert.deepEqual(await missing(c.cas, "", [claimed]), [claimed.hash]);
      const shortBy = await connectError(bsWrite(c.bs, writeName(claimed), wrong.subarray(1)));
      assert.equal(shortBy.code, Code.InvalidArgument, shortBy.message);
      assert.deepEqual(await missing(c.cas, "", [claimed]), [claimed.hash]);
      const batch = await c.cas.batchUpdateBlobs({
        instanceName: "",
        requests: [{ digest: proto(claimed), data: wrong }],
      });
      assert.equal(batch.responses[0]?.status?.code, Code.InvalidArgument);
      assert.deepEqual(await missing(c.cas, "", [claimed]), [claimed.hash]);
    });

    await t.step("a write_offset that skips ahead is refused", async () => {
      const blob = await patternBytes(200_000, 3);
      const d = digestOf(blob);
      const name = writeName(d);
      const skip = await connectError(c.bs.write((async function* () {
        yield { resourceName: name, writeOffset: 0n, data: blob.subarray(0, 1000) };
        yield { writeOffset: 5000n, data: blob.subarray(5000, 6000) };
        yield { writeOffset: 6000n, data: blob.subarray(6000), finishWrite: true };
      })()));
      assert.equal(skip.code, Code.InvalidArgument, skip.message);
      const fresh = await connectError(c.bs.write((async function* () {
        yield {
          resourceName: writeName(d),
          writeOffset: 1000n,
          data: blob.subarray(1000),
          finishWrite: true,
        };
      })()));
      assert.equal(fresh.code, Code.InvalidArgument, fresh.message);
      assert.deepEqual(await missing(c.cas, "", [d]), [d.hash]);
    });

    await t.step("a negative read_offset is OUT_OF_RANGE", async () => {
      const blob = enc.encode(`offsets ${crypto.randomUUID()}`);
      const d = digestOf(blob);
      await c.cas.batchUpdateBlobs({ instanceName: "", requests: [{ digest: proto(d), data: blob }] });
      const neg = await connectError(bsRead(c.bs, readName(d), -1n));
      assert.equal(neg.code, Code.OutOfRange, neg.message);
      const past = await connectError(bsRead(c.bs, readName(d), BigInt(d.size + 1)));
      assert.equal(past.code, Code.OutOfRange, past.message);
    });

    await t.step("a client vanishing mid-upload leaves nothing and the server keeps serving", async () => {
      const blob = await patternBytes(4 * 1024 * 1024, 5);
      const d = digestOf(blob);
      // connect-node: abort the call after 1 MiB.
      const ac = new AbortController();
      const aborted = await connectError(c.bs.write(
        (async function* () {
          const name = writeName(d);
          let off = 0;
          for await (const data of chunksOf(blob, 256 * 1024)) {
            yield { resourceName: off === 0 ? name : "", writeOffset: BigInt(off), data };
            off += data.length;
            if (off >= 1024 * 1024) {
              ac.abort();
              return; // the call is cancelled: nothing more is sent
            }
          }
        })(),
        { signal: ac.signal },
      ));
      assert.equal(aborted.code, Code.Canceled);

      // grpc-js: a whole connection dropped mid-stream (client closed, call never finished).
      const raw = new BsJs(`127.0.0.1:${cairn.port}`, grpc.credentials.createInsecure());
      const dropped = await new Promise<grpc.ServiceError | null>((resolve) => {
        const call = raw.write((err: grpc.ServiceError | null) => resolve(err));
        // Cancel once the first 512 KiB were handed to the connection (an event, not a sleep).
        call.write(
          { resourceName: writeName(d), writeOffset: 0n, data: blob.subarray(0, 512 * 1024) },
          () => {
            call.cancel();
            raw.close();
          },
        );
      });
      assert.equal(dropped?.code, grpc.status.CANCELLED);
      assert.ok(cairn.alive(), cairn.logs());
      assert.deepEqual(await missing(c.cas, "", [d]), [d.hash]);
      const e = await connectError(bsRead(c.bs, readName(d)));
      assert.equal(e.code, Code.NotFound);
      // Others are served; the same blob uploads from scratch.
      assert.equal((await c.health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
      const w = await bsWrite(c.bs, writeName(d), blob);
      assert.equal(w.committedSize, BigInt(d.size));
      assert.equal(digestOf(await bsRead(c.bs, readName(d))).hash, d.hash);
      assert.ok(cairn.alive(), cairn.logs());
    });

    await t.step("the ActionResult wire bytes round-trip unchanged", async () => {
      const action = digestOf(enc.encode(`bytes ${crypto.randomUUID()}`));
      const result = create(ActionResultSchema, { exitCode: 7, stdoutRaw: enc.encode("x") });
      await c.ac.updateActionResult({
        instanceName: "main",
        actionDigest: proto(action),
        actionResult: result,
      });
      const got = await c.ac.getActionResult({ instanceName: "main", actionDigest: proto(action) });
      assert.deepEqual(toBinary(ActionResultSchema, got), toBinary(ActionResultSchema, result));
    });
  } finally {
    await cairn.stop();
  }
});

// --- TLS and mTLS ------------------------------------------------------------------------------------

Deno.test("main.ts over TLS (grpcs) and mTLS", async (t) => {
  const certs = await makeTestCerts();
  try {
    await t.step("grpcs: connect-node and grpc-js with the test CA; an untrusting client fails", async () => {
      const cairn = await startCairnProcess({
        tls: true,
        config: memoryCacheConfig({
          listener: {
            socket_address: "127.0.0.1:0",
            tls: { cert_file: certs.serverCert, key_file: certs.serverKey },
          },
        }),
      });
      try {
        assert.match(cairn.logs(), /--remote_cache=grpcs:\/\/localhost:\d+/);
        const c = connectClients(cairn.url, { tls: { ca_file: certs.caCert } });
        const blob = await patternBytes(1024 * 1024 + 1, 9);
        const d = digestOf(blob);
        await bsWrite(c.bs, writeName(d), blob);
        assert.equal(digestOf(await bsRead(c.bs, readName(d))).hash, d.hash);
        assert.equal((await c.health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);

        const ca = Buffer.from(await Deno.readFile(certs.caCert));
        const js = new CasJs(`localhost:${cairn.port}`, grpc.credentials.createSsl(ca));
        try {
          const fm = await unary<{ missingBlobDigests: unknown[] }>(js, "findMissingBlobs", {
            instanceName: "",
            blobDigests: [proto(d)],
          });
          assert.equal(fm.missingBlobDigests.length, 0);
        } finally {
          js.close();
        }

        // A client without the test CA fails the TLS handshake (INTERNAL from connect-node, naming the
        // certificate), and a cleartext client is cut off (not left to its deadline).
        const untrusting = connectClients(cairn.url);
        const e1 = await connectError(untrusting.health.check({}));
        // Under load the client's first write can race the server dropping the failed handshake (EPIPE, or a
        // reset that connect-node reports as ABORTED).
        assert.ok([Code.Internal, Code.Aborted].includes(e1.code), `${Code[e1.code]}: ${e1.message}`);
        assert.match(e1.rawMessage, e1.code === Code.Aborted ? /ECONNRESET/ : /certificate|EPIPE|ECONNRESET/);
        const plain = connectClients(`grpc://127.0.0.1:${cairn.port}`);
        const t0 = performance.now();
        const e2 = await connectError(plain.health.check({}, { timeoutMs: 30_000 }));
        // Cut off, not left to its deadline: CANCELLED/UNAVAILABLE when the server's close is seen first, or
        // INTERNAL/ABORTED naming a broken pipe or reset when the client's write races the close (under load).
        assert.ok(
          [Code.Canceled, Code.Unavailable].includes(e2.code) ||
            ([Code.Internal, Code.Aborted].includes(e2.code) && /EPIPE|ECONNRESET/.test(e2.rawMessage)),
          `${Code[e2.code]}: ${e2.message}`,
        );
        assert.ok(performance.now() - t0 < 25_000, "the cleartext client waited for its deadline");
        // The server is up all along: the failures above are the clients' (a trusting client is served).
        assert.equal((await c.health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
      } finally {
        await cairn.stop();
      }
    });

    await t.step("mTLS: a client certificate from the CA works, none is refused", async () => {
      const cairn = await startCairnProcess({
        tls: true,
        config: memoryCacheConfig({
          listener: {
            socket_address: "127.0.0.1:0",
            tls: { cert_file: certs.serverCert, key_file: certs.serverKey, client_ca_file: certs.caCert },
          },
        }),
      });
      try {
        const good = connectClients(cairn.url, {
          tls: { ca_file: certs.caCert, cert_file: certs.clientCert, key_file: certs.clientKey },
        });
        assert.equal((await good.health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
        const d = digestOf(enc.encode("mtls"));
        assert.deepEqual(await missing(good.cas, "", [d]), [d.hash]);

        const ca = Buffer.from(await Deno.readFile(certs.caCert));
        const key = Buffer.from(await Deno.readFile(certs.clientKey));
        const cert = Buffer.from(await Deno.readFile(certs.clientCert));
        const js = new HealthJs(`localhost:${cairn.port}`, grpc.credentials.createSsl(ca, key, cert));
        try {
          assert.equal((await unary<{ status: number }>(js, "check", {})).status, 1);
        } finally {
          js.close();
        }

        const anonymous = connectClients(cairn.url, { tls: { ca_file: certs.caCert } });
        const e = await connectError(
          anonymous.cas.findMissingBlobs({ instanceName: "", blobDigests: [proto(d)] }),
        );
        assert.equal(e.code, Code.Unauthenticated, e.message);
        const rogue = connectClients(cairn.url, {
          tls: { ca_file: certs.caCert, cert_file: certs.rogueCert, key_file: certs.rogueKey },
        });
        const e2 = await connectError(rogue.health.check({}));
        assert.equal(e2.code, Code.Unauthenticated, e2.message);
      } finally {
        await cairn.stop();
      }
    });
  } finally {
    await Deno.remove(certs.dir, { recursive: true });
  }
});
