/**
 * Deno gap behind `h1_relay.ts` and `sniffed_bytes.ts` (denoland/deno#35609): Deno's `node:http` server closes
 * a connection handed over with `server.emit("connection", socket)` after its first response while the server
 * is not listening, whatever the response (chunked or with a length) and however the sniffed first bytes were
 * handed over (`unshift` or a replayed `data` event). The same server, once listening, keeps such connections
 * alive: that control shows the cause. When the gap test fails, Deno fixed it: hand HTTP/1.1 connections to
 * the server directly and remove the relay and `sniffed_bytes.ts`.
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

type HandOver = "emit" | "unshift" | "replay";

/** Two requests on one connection handed to a `node:http` server; what happened to the second. */
async function secondRequest(
  handOver: HandOver,
  chunked: boolean,
  listening: boolean,
): Promise<"answered" | "closed"> {
  const h1 = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (chunked) {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("hello ");
        res.end("world");
      } else {
        res.writeHead(200, { "content-type": "text/plain", "content-length": "11" });
        res.end("hello world");
      }
    });
  });
  if (listening) await new Promise<void>((r) => h1.listen(0, "127.0.0.1", () => r()));
  const outer = net.createServer((s) => {
    if (handOver === "emit") return h1.emit("connection", s);
    s.once("data", (seen: Buffer) => {
      if (handOver === "unshift") {
        s.pause();
        s.unshift(seen);
        h1.emit("connection", s);
        s.resume();
      } else {
        h1.emit("connection", s);
        s.emit("data", seen);
      }
    });
  });
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
    const ends = chunked ? /0\r\n\r\n/g : /hello world/g;
    const responses = (n: number) =>
      new Promise<"answered">((resolve) => {
        onText = () => (text.match(ends) ?? []).length >= n && resolve("answered");
        onText();
      });
    socket.write("GET /a HTTP/1.1\r\nhost: x\r\n\r\n");
    assert.equal(await Promise.race([closed, responses(1)]), "answered");
    socket.write("GET /b HTTP/1.1\r\nhost: x\r\n\r\n");
    return await Promise.race([closed, responses(2)]);
  } finally {
    socket.destroy();
    await new Promise<void>((r) => outer.close(() => r()));
    h1.closeAllConnections?.();
    if (listening) await new Promise<void>((r) => h1.close(() => r()));
  }
}

for (const handOver of ["emit", "unshift", "replay"] as const) {
  for (const chunked of [true, false]) {
    const what = `${handOver}, ${chunked ? "chunked" : "content-length"}`;
    Deno.test(`Deno gap: node:http drops keep-alive on an emitted connection (${what})`, async () => {
      assert.equal(
        await secondRequest(handOver, chunked, false),
        "closed",
        "Deno now keeps emitted HTTP/1.1 connections alive: the relay (h1_relay.ts) can go",
      );
    });
  }
}

Deno.test("control: a listening node:http server keeps emitted connections alive", async () => {
  assert.equal(await secondRequest("unshift", true, true), "answered");
});
