/**
 * Client authentication end to end through the real `main.ts` on loopback: bearer tokens, Basic
 * credentials and mTLS identities mapped to per-instance permissions, enforced alike on gRPC (grpc-js),
 * Connect (fetch) and Bazel's HTTP cache; the HTTP cache checks every PUT against its hash; a read-only
 * instance refuses writes.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import grpc from "@grpc/grpc-js";
import {
  ActionCache,
  ContentAddressableStorage,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream } from "../../src/gen/google/bytestream/bytestream_pb.ts";
import { type CairnProcess, startCairnProcess } from "../fixtures/cairn_process.ts";
import { grpcJsClient, makeTestCerts, type TestCerts } from "../fixtures/transport_fixtures.ts";

const OK = 0;
const NOT_FOUND = 5;
const PERMISSION_DENIED = 7;
const UNAUTHENTICATED = 16;

const CasClient = grpcJsClient(ContentAddressableStorage);
const AcClient = grpcJsClient(ActionCache);
const ByteStreamClient = grpcJsClient(ByteStream);

const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");
const TOKENS = { ci: "ci-token-0123456789", reader: "reader-token-0123456789" } as const;

function config(certs: TestCerts): Record<string, unknown> {
  const memory = (name: string) => ({ name, memory: { eviction_policy: { max_bytes: "100mb" } } });
  const cacheServices = (readOnly: boolean) => ({
    cas: [{ instance_name: "", cas_store: "CAS" }, { instance_name: "main", cas_store: "CAS_MAIN" }],
    ac: [
      { instance_name: "", ac_store: "AC", read_only: readOnly },
      { instance_name: "main", ac_store: "AC_MAIN", read_only: readOnly },
    ],
    bytestream: [{ instance_name: "", cas_store: "CAS" }, { instance_name: "main", cas_store: "CAS_MAIN" }],
    capabilities: [],
  });
  const auth = {
    anonymous: "none",
    users: [
      {
        name: "ci",
        token_sha256: sha256(TOKENS.ci),
        permissions: { "*": ["read", "write_cas", "write_ac", "execute"] },
      },
      { name: "reader", token_sha256: sha256(TOKENS.reader), permissions: { "*": ["read"] } },
      {
        name: "dev",
        password_sha256: sha256("dev-password"),
        permissions: { "": ["read", "write_cas", "write_ac"], main: ["read"] },
      },
      { name: "robot", mtls_subject: "client", permissions: { "*": ["read"] } },
    ],
  };
  return {
    stores: [
      { name: "CAS", verify: { verify_size: true, verify_hash: true, backend: { memory: {} } } },
      { name: "CAS_MAIN", verify: { verify_size: true, verify_hash: true, backend: { memory: {} } } },
      memory("AC"),
      memory("AC_MAIN"),
    ],
    servers: [
      { listener: { http: { socket_address: "127.0.0.1:0" } }, services: cacheServices(false), auth },
      {
        listener: {
          http: {
            socket_address: "127.0.0.1:0",
            tls: { cert_file: certs.serverCert, key_file: certs.serverKey, client_ca_file: certs.caCert },
          },
        },
        services: cacheServices(false),
        auth,
      },
      // No auth section, read-only action cache: every client may read, nobody may write over HTTP.
      { listener: { http: { socket_address: "127.0.0.1:0" } }, services: cacheServices(true) },
    ],
  };
}

// deno-lint-ignore no-explicit-any
type AnyClient = any;

/** A unary grpc-js call; resolves with the gRPC status code and the response. */
function call(
  client: AnyClient,
  method: string,
  request: unknown,
  metadata: Record<string, string> = {},
): Promise<{ code: number; details: string; response: AnyClient }> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve) => {
    client[method](request, md, (err: grpc.ServiceError | null, response: unknown) => {
      resolve(err ? { code: err.code, details: err.details, response } : { code: OK, details: "", response });
    });
  });
}

/** A ByteStream Write of `data` as one message; resolves with the status code. */
function write(client: AnyClient, resourceName: string, data: Uint8Array, metadata: Record<string, string>) {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise<number>((resolve) => {
    const stream = client.write(md, (err: grpc.ServiceError | null) => resolve(err ? err.code : OK));
    stream.write({ resourceName, writeOffset: 0n, finishWrite: true, data });
    stream.end();
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const basic = (user: string, password: string) => ({
  authorization: `Basic ${btoa(`${user}:${password}`)}`,
});

const DATA = new TextEncoder().encode("the real blob");
const DIGEST = { hash: sha256(DATA), sizeBytes: BigInt(DATA.byteLength) };
const ACTION = { hash: sha256("some action"), sizeBytes: 11n };
const RESULT = { exitCode: 7 };

Deno.test({
  name: "auth: tokens, Basic credentials and mTLS identities map to per-instance permissions",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const certs = await makeTestCerts();
    let cairn: CairnProcess | undefined;
    const clients: AnyClient[] = [];
    try {
      cairn = await startCairnProcess({ config: config(certs) });
      assert.match(
        cairn.logs(),
        /server 1 requires client credentials \(4 user\(s\); anonymous clients: none\)\n/,
      );
      assert.match(cairn.logs(), /server 0 requires .*WARNING: mtls_subject users cannot match here/);
      const [plain, tls, readOnly] = cairn.servers;
      const target = `127.0.0.1:${plain!.port}`;
      const cas = new CasClient(target, grpc.credentials.createInsecure());
      const ac = new AcClient(target, grpc.credentials.createInsecure());
      const bs = new ByteStreamClient(target, grpc.credentials.createInsecure());
      clients.push(cas, ac, bs);
      const update = { instanceName: "", actionDigest: ACTION, actionResult: RESULT };

      await t.step("no credential: UNAUTHENTICATED on every RPC, reads included", async () => {
        const r = await call(ac, "updateActionResult", update);
        assert.equal(r.code, UNAUTHENTICATED, r.details);
        assert.equal((await call(ac, "getActionResult", { actionDigest: ACTION })).code, UNAUTHENTICATED);
        assert.equal((await call(cas, "findMissingBlobs", { blobDigests: [DIGEST] })).code, UNAUTHENTICATED);
        assert.equal(
          await write(bs, `uploads/${crypto.randomUUID()}/blobs/${DIGEST.hash}/${DATA.length}`, DATA, {}),
          UNAUTHENTICATED,
        );
      });

      await t.step("an unknown token is UNAUTHENTICATED", async () => {
        const r = await call(ac, "getActionResult", { actionDigest: ACTION }, bearer("not-a-token"));
        assert.equal(r.code, UNAUTHENTICATED, r.details);
      });

      await t.step("read-only token: reads pass, AC and CAS writes are PERMISSION_DENIED", async () => {
        const h = bearer(TOKENS.reader);
        const r = await call(ac, "updateActionResult", update, h);
        assert.equal(r.code, PERMISSION_DENIED, r.details);
        assert.match(r.details, /"reader" has no write_ac permission/);
        const batch = await call(cas, "batchUpdateBlobs", { requests: [{ digest: DIGEST, data: DATA }] }, h);
        assert.equal(batch.code, PERMISSION_DENIED);
        const resource = `uploads/${crypto.randomUUID()}/blobs/${DIGEST.hash}/${DATA.length}`;
        assert.equal(await write(bs, resource, DATA, h), PERMISSION_DENIED);
        assert.equal((await call(cas, "findMissingBlobs", { blobDigests: [DIGEST] }, h)).code, OK);
        assert.equal((await call(ac, "getActionResult", { actionDigest: ACTION }, h)).code, NOT_FOUND);
      });

      await t.step("full token: writes and reads back", async () => {
        const h = bearer(TOKENS.ci);
        assert.equal((await call(ac, "updateActionResult", update, h)).code, OK);
        const got = await call(ac, "getActionResult", { actionDigest: ACTION }, h);
        assert.equal(got.code, OK);
        assert.equal(got.response.exitCode, 7);
        const resource = `main/uploads/${crypto.randomUUID()}/blobs/${DIGEST.hash}/${DATA.length}`;
        assert.equal(await write(bs, resource, DATA, h), OK);
        // The read-only token reads what was written (the encoded GetActionResult path too).
        const read = await call(ac, "getActionResult", { actionDigest: ACTION }, bearer(TOKENS.reader));
        assert.equal(read.code, OK);
      });

      await t.step(
        "Basic credentials (grpc://user:password@host) with per-instance permissions",
        async () => {
          const h = basic("dev", "dev-password");
          assert.equal((await call(ac, "updateActionResult", update, h)).code, OK);
          const main = await call(ac, "updateActionResult", { ...update, instanceName: "main" }, h);
          assert.equal(main.code, PERMISSION_DENIED, main.details);
          assert.equal(
            (await call(ac, "getActionResult", { instanceName: "main", actionDigest: ACTION }, h)).code,
            NOT_FOUND,
          );
          const wrong = await call(ac, "getActionResult", { actionDigest: ACTION }, basic("dev", "guess"));
          assert.equal(wrong.code, UNAUTHENTICATED);
        },
      );

      await t.step(
        "Connect protocol: the same checks (401 unauthenticated, 403 permission_denied)",
        async () => {
          const url = `${cairn!.httpUrl}/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult`;
          const body = JSON.stringify({
            actionDigest: { hash: ACTION.hash, sizeBytes: "11" },
            actionResult: RESULT,
          });
          const post = (headers: Record<string, string>) =>
            fetch(url, { method: "POST", body, headers: { "content-type": "application/json", ...headers } });
          const anon = await post({});
          assert.equal(anon.status, 401);
          assert.equal((await anon.json()).code, "unauthenticated");
          const reader = await post(bearer(TOKENS.reader));
          assert.equal(reader.status, 403);
          assert.equal((await reader.json()).code, "permission_denied");
          const ci = await post(bearer(TOKENS.ci));
          assert.equal(ci.status, 200);
          await ci.body?.cancel();
        },
      );

      await t.step(
        "HTTP cache: 401/403 by permission; a PUT not matching its hash is 400, GET keeps the blob",
        async () => {
          const blobUrl = `${cairn!.httpUrl}/cas/${DIGEST.hash}`;
          const put = (body: Uint8Array, headers: Record<string, string>) =>
            fetch(blobUrl, { method: "PUT", body: body as Uint8Array<ArrayBuffer>, headers });
          const anonGet = await fetch(blobUrl);
          assert.equal(anonGet.status, 401);
          assert.match(anonGet.headers.get("www-authenticate") ?? "", /Bearer/);
          await anonGet.body?.cancel();
          const readerPut = await put(DATA, bearer(TOKENS.reader));
          assert.equal(readerPut.status, 403);
          await readerPut.body?.cancel();
          const ciPut = await put(DATA, bearer(TOKENS.ci));
          assert.equal(ciPut.status, 200);
          await ciPut.body?.cancel();
          // The attack: an empty body (and a wrong body) for the real blob's hash.
          for (const body of [new Uint8Array(0), new TextEncoder().encode("forged")]) {
            const bad = await put(body, bearer(TOKENS.ci));
            assert.equal(bad.status, 400);
            await bad.body?.cancel();
          }
          const got = await fetch(blobUrl, { headers: bearer(TOKENS.reader) });
          assert.equal(got.status, 200);
          assert.deepEqual(new Uint8Array(await got.arrayBuffer()), DATA);
        },
      );

      await t.step("read-only instance without auth: reads pass, every HTTP PUT is 403", async () => {
        const base = `http://127.0.0.1:${readOnly!.port}`;
        const fresh = new TextEncoder().encode("never stored");
        for (const path of [`/cas/${sha256(fresh)}`, `/cas/${DIGEST.hash}`, `/ac/${ACTION.hash}`]) {
          const res = await fetch(`${base}${path}`, { method: "PUT", body: new Uint8Array(0) });
          assert.equal(res.status, 403, path);
          await res.body?.cancel();
        }
        const missing = await fetch(`${base}/cas/${sha256(fresh)}`);
        assert.equal(missing.status, 404); // nothing was recorded
        await missing.body?.cancel();
        // The blob written through server 0 (same stores) still reads back whole.
        const get = await fetch(`${base}/cas/${DIGEST.hash}`);
        assert.equal(get.status, 200);
        assert.deepEqual(new Uint8Array(await get.arrayBuffer()), DATA);
      });

      await t.step("mTLS: the client certificate's CN is the identity", async () => {
        const creds = grpc.credentials.createSsl(
          Buffer.from(Deno.readFileSync(certs.caCert)),
          Buffer.from(Deno.readFileSync(certs.clientKey)),
          Buffer.from(Deno.readFileSync(certs.clientCert)),
        );
        const tlsAc = new AcClient(`localhost:${tls!.port}`, creds);
        clients.push(tlsAc);
        const other = { hash: sha256("another action"), sizeBytes: 14n };
        const read = await call(tlsAc, "getActionResult", { actionDigest: other });
        assert.equal(read.code, NOT_FOUND, read.details); // authenticated as "robot", who may read
        const denied = await call(tlsAc, "updateActionResult", { ...update, actionDigest: other });
        assert.equal(denied.code, PERMISSION_DENIED, denied.details);
        assert.match(denied.details, /"robot"/);
        // A token on the same connection takes precedence over the certificate.
        const asCi = await call(
          tlsAc,
          "updateActionResult",
          { ...update, actionDigest: other },
          bearer(TOKENS.ci),
        );
        assert.equal(asCi.code, OK);
        // HTTP/1.1 over the same TLS listener (piped to the inner HTTP/1.1 server) keeps the identity.
        const client = Deno.createHttpClient({
          caCerts: [Deno.readTextFileSync(certs.caCert)],
          cert: Deno.readTextFileSync(certs.clientCert),
          key: Deno.readTextFileSync(certs.clientKey),
          http2: false,
        });
        try {
          const url = `https://localhost:${tls!.port}/cas/${DIGEST.hash}`;
          const get = await fetch(url, { client });
          assert.equal(get.status, 200); // "robot" may read (anonymous would be 401)
          assert.deepEqual(new Uint8Array(await get.arrayBuffer()), DATA);
          const put = await fetch(url, { client, method: "PUT", body: DATA as Uint8Array<ArrayBuffer> });
          assert.equal(put.status, 403);
          await put.body?.cancel();
        } finally {
          client.close();
        }
      });
    } finally {
      for (const c of clients) c.close();
      await cairn?.stop();
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});
