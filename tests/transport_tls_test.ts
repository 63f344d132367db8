// TLS and mTLS on the shared listener: grpcs with a test CA, client certificates checked by hand
// (missing or foreign certificates refused), HTTP/1.1 over TLS still served.
import assert from "node:assert/strict";
import http2 from "node:http2";
import https from "node:https";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import grpc from "@grpc/grpc-js";
import { Health } from "../src/gen/grpc/health/v1/health_pb.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";
import {
  grpcJsClient,
  healthBinding,
  makeTestCerts,
  startServer,
  type TestCerts,
} from "./fixtures/transport_fixtures.ts";

const certs: TestCerts = await makeTestCerts();
const HealthClient = grpcJsClient(Health);
/** Deno refuses an IP address as TLS servername; the certificate also names localhost. */
const SNI = { "grpc.ssl_target_name_override": "localhost" };

function check(client: { check: (...a: unknown[]) => void }): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    client.check({}, (err: Error | null, res: { status: number }) => err ? reject(err) : resolve(res));
  });
}

Deno.test("TLS: grpcs with the test CA (connect-node and grpc-js), and HTTP/1.1 over TLS", async () => {
  const { server, port } = await startServer({
    bindings: [healthBinding()],
    routes: [() => new Response("hello")],
    listener: { tls: { cert_file: certs.serverCert, key_file: certs.serverKey } },
  });
  try {
    const health = createClient(
      Health,
      createGrpcClientTransport(`grpcs://127.0.0.1:${port}`, { tls: { ca_file: certs.caCert } }),
    );
    assert.equal((await health.check({})).status, 1);

    const ca = await Deno.readFile(certs.caCert);
    const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(ca)), SNI);
    try {
      assert.equal((await check(client)).status, 1);
    } finally {
      client.close();
    }

    const body = await new Promise<string>((resolve, reject) => {
      https.get(`https://127.0.0.1:${port}/`, { ca: Buffer.from(ca) }, (res) => {
        let s = "";
        res.on("data", (c) => s += c);
        res.on("end", () => resolve(s));
      }).on("error", reject);
    });
    assert.equal(body, "hello");

    // a client that does not trust the server's CA fails
    const untrusting = createClient(Health, createGrpcClientTransport(`grpcs://127.0.0.1:${port}`));
    const e = await untrusting.check({}).then(() => undefined, (e) => ConnectError.from(e));
    assert.ok(e instanceof ConnectError, "a client that does not trust the CA must fail");
    // connect-node reports the failed handshake as INTERNAL with the TLS error (not UNAVAILABLE: the
    // server is up, as the trusting clients above showed).
    assert.equal(e.code, Code.Internal, e.message);
    assert.equal((e.cause as { code?: string } | undefined)?.code, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
  } finally {
    await server.close(100);
  }
});

for (
  const [name, tls] of [
    ["client_ca_file", {
      cert_file: certs.serverCert,
      key_file: certs.serverKey,
      client_ca_file: certs.caCert,
    }],
    ["ca_file + verify_client", {
      cert_file: certs.serverCert,
      key_file: certs.serverKey,
      ca_file: certs.caCert,
      verify_client: true,
    }],
  ] as const
) {
  Deno.test(`mTLS (${name}): a client certificate from the CA is accepted, none or a foreign one refused`, async () => {
    const { server, port } = await startServer({ bindings: [healthBinding()], listener: { tls } });
    try {
      const ok = createClient(
        Health,
        createGrpcClientTransport(`grpcs://127.0.0.1:${port}`, {
          tls: { ca_file: certs.caCert, cert_file: certs.clientCert, key_file: certs.clientKey },
        }),
      );
      assert.equal((await ok.check({})).status, 1);

      const anonymous = createClient(
        Health,
        createGrpcClientTransport(`grpcs://127.0.0.1:${port}`, { tls: { ca_file: certs.caCert } }),
      );
      const e1 = await anonymous.check({}).then(() => undefined, (e) => ConnectError.from(e));
      assert.ok(e1 instanceof ConnectError, "a client without a certificate must be refused");
      assert.equal(e1.code, Code.Unauthenticated);
      assert.match(e1.rawMessage, /no certificate/);

      const rogue = createClient(
        Health,
        createGrpcClientTransport(`grpcs://127.0.0.1:${port}`, {
          tls: { ca_file: certs.caCert, cert_file: certs.rogueCert, key_file: certs.rogueKey },
        }),
      );
      const e2 = await rogue.check({}).then(() => undefined, (e) => ConnectError.from(e));
      assert.ok(e2 instanceof ConnectError, "a client with a foreign certificate must be refused");
      assert.equal(e2.code, Code.Unauthenticated);
      assert.match(e2.rawMessage, /not signed by a trusted CA/);

      // Plain HTTP over HTTP/2 without a certificate: HTTP 401, not 200 with a grpc-status.
      const status = await new Promise<number>((resolve, reject) => {
        const session = http2.connect(`https://localhost:${port}`, {
          ca: Deno.readTextFileSync(certs.caCert),
        });
        session.on("error", reject);
        const req = session.request({ ":method": "GET", ":path": "/status" });
        req.on("response", (h) => {
          resolve(Number(h[":status"]));
          session.destroy();
        });
        req.on("error", reject);
        req.end();
      });
      assert.equal(status, 401);

      // grpc-js with the right certificate
      const ca = Buffer.from(await Deno.readFile(certs.caCert));
      const key = Buffer.from(await Deno.readFile(certs.clientKey));
      const cert = Buffer.from(await Deno.readFile(certs.clientCert));
      const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createSsl(ca, key, cert), SNI);
      try {
        assert.equal((await check(client)).status, 1);
      } finally {
        client.close();
      }
    } finally {
      await server.close(100);
    }
  });
}

Deno.test("TLS config errors name the missing piece", async () => {
  const { createCairnServer } = await import("../src/transport/server.ts");
  const server = createCairnServer({
    listener: {
      socket_address: "127.0.0.1:0",
      tls: { cert_file: "/nonexistent.pem", key_file: certs.serverKey },
    },
    bindings: [],
  });
  await assert.rejects(server.listen(), /cert_file \/nonexistent\.pem cannot be read/);
  const s2 = createCairnServer({
    listener: {
      socket_address: "127.0.0.1:0",
      tls: { cert_file: certs.serverCert, key_file: certs.serverKey, verify_client: true },
    },
    bindings: [],
  });
  await assert.rejects(s2.listen(), /verify_client is set but ca_file is missing/);
});

addEventListener("unload", () => Deno.removeSync(certs.dir, { recursive: true }));
