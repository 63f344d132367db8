/**
 * Deno's own client-certificate verdict against `client_cert.ts`. The hand-written chain walk exists because
 * Deno's `TLSSocket.authorized` said yes to a client that sent no certificate (denoland/deno#34366). This
 * test asserts the hand-written verdict (always) and whether Deno's verdict agrees with it: Deno 2.9.0 does,
 * so the walk can be replaced by `socket.authorized`; should a Deno release disagree again, this test fails
 * and the walk must stay.
 *
 * @example
 * ```sh
 * deno test --allow-net --allow-read --allow-write --allow-run src/transport/deno_compat/client_cert_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import type net from "node:net";
import tls from "node:tls";
import { makeTestCerts } from "../../../tests/fixtures/transport_fixtures.ts";
import { verifyClientCertificate } from "./client_cert.ts";

interface Verdict {
  readonly ours: string | undefined;
  readonly deno: boolean;
}

Deno.test("Deno's socket.authorized agrees with the hand-written client-certificate check", async () => {
  const certs = await makeTestCerts();
  const read = (p: string) => Deno.readTextFileSync(p);
  const ca = read(certs.caCert);
  const cas = [new X509Certificate(ca)];
  let onVerdict = (_v: Verdict) => {};
  const server = tls.createServer({
    cert: read(certs.serverCert),
    key: read(certs.serverKey),
    requestCert: true,
    rejectUnauthorized: false,
    ca,
  }, (socket) => {
    socket.on("error", () => {});
    onVerdict({ ours: verifyClientCertificate(socket, cas), deno: socket.authorized });
    socket.end();
  });
  try {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const verdictFor = async (cert: { cert: string; key: string } | undefined): Promise<Verdict> => {
      const verdict = new Promise<Verdict>((r) => onVerdict = r);
      const client = tls.connect({ port, host: "127.0.0.1", servername: "localhost", ca, ...cert });
      client.on("error", () => {});
      try {
        return await verdict;
      } finally {
        client.destroy();
      }
    };
    const good = await verdictFor({ cert: read(certs.clientCert), key: read(certs.clientKey) });
    const rogue = await verdictFor({ cert: read(certs.rogueCert), key: read(certs.rogueKey) });
    const none = await verdictFor(undefined);
    assert.equal(good.ours, undefined);
    assert.match(rogue.ours ?? "", /not signed by a trusted CA/);
    assert.equal(none.ours, "the client sent no certificate");
    assert.deepEqual(
      { good: good.deno, rogue: rogue.deno, none: none.deno },
      { good: true, rogue: false, none: false },
      "Deno's socket.authorized disagrees with the hand-written check: keep client_cert.ts",
    );
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    await Deno.remove(certs.dir, { recursive: true });
  }
});
