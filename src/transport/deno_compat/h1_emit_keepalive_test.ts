/**
 * Deno 2.9.0 gap behind the HTTP/1.1 relay in `../server.ts`: Deno's `node:http` server closes a connection
 * handed over with `server.emit("connection", socket)` after a chunked response instead of keeping it alive,
 * so Bazel's pooled HTTP cache client loses the next request. This test asserts the gap is still there; when
 * it fails, Deno fixed it: hand HTTP/1.1 connections to the server directly and remove the relay.
 *
 * @example
 * ```sh
 * deno test --allow-net src/transport/deno_compat/h1_emit_keepalive_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";

Deno.test("Deno gap: node:http drops keep-alive after a chunked response on an emitted connection", async () => {
  const h1 = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("hello ");
      res.end("world");
    });
  });
  const outer = net.createServer((s) => h1.emit("connection", s));
  await new Promise<void>((r) => outer.listen(0, "127.0.0.1", () => r()));
  const port = (outer.address() as net.AddressInfo).port;
  const socket = net.connect(port, "127.0.0.1");
  try {
    let text = "";
    let onText = () => {};
    socket.on("data", (c: Buffer) => {
      text += c.toString("latin1");
      onText();
    });
    const closed = new Promise<"closed">((r) => socket.once("close", () => r("closed")));
    const responses = (n: number) =>
      new Promise<"answered">((resolve) => {
        onText = () => (text.match(/0\r\n\r\n/g) ?? []).length >= n && resolve("answered");
        onText();
      });
    socket.write("GET /a HTTP/1.1\r\nhost: x\r\n\r\n");
    await responses(1);
    socket.write("GET /b HTTP/1.1\r\nhost: x\r\n\r\n");
    const outcome = await Promise.race([closed, responses(2)]);
    assert.equal(
      outcome,
      "closed",
      "Deno now keeps emitted HTTP/1.1 connections alive: the relay in server.ts can go",
    );
  } finally {
    socket.destroy();
    await new Promise<void>((r) => outer.close(() => r()));
    h1.closeAllConnections?.();
  }
});
