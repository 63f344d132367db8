/**
 * Deno gap behind `send_backlog.ts` (denoland/deno#36044): Deno 2.9.0's `node:http2` completes a stream's
 * writes at once, even while the peer's flow-control window is closed. A raw HTTP/2 client that never sends a
 * WINDOW_UPDATE lets through at most its 64 KiB initial window, yet every write of a 4 MiB response reports
 * done. When this test fails, Deno holds write callbacks until the bytes are framed: wait on them and remove
 * `send_backlog.ts`.
 *
 * @example
 * ```sh
 * deno test --allow-net src/transport/deno_compat/send_backlog_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { Buffer } from "node:buffer";

/** A frame header: 24-bit length, type, flags, 31-bit stream id (RFC 9113 §4.1). */
function frame(type: number, flags: number, stream: number, payload: Uint8Array): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

Deno.test("Deno gap: node:http2 completes stream writes beyond the peer's flow-control window", async () => {
  const CHUNK = 64 * 1024;
  const CHUNKS = 64;
  let acknowledged = 0;
  let allAcknowledged = () => {};
  const done = new Promise<"acknowledged">((resolve) => allAcknowledged = () => resolve("acknowledged"));
  const server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    stream.on("error", () => {});
    stream.respond({ ":status": 200 });
    for (let i = 0; i < CHUNKS; i++) {
      stream.write(Buffer.alloc(CHUNK), () => {
        acknowledged += CHUNK;
        if (acknowledged === CHUNK * CHUNKS) allAcknowledged();
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const socket = net.connect(port, "127.0.0.1");
  let received = 0;
  socket.on("data", (c: Buffer) => received += c.length); // read and drop: TCP never limits the sender
  socket.on("error", () => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await new Promise<void>((r) => socket.once("connect", () => r()));
    socket.write(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"));
    socket.write(frame(0x4, 0, 0, new Uint8Array())); // SETTINGS: defaults (64 KiB initial window)
    socket.write(frame(0x4, 0x1, 0, new Uint8Array())); // SETTINGS ACK of the server's settings
    // HEADERS, END_STREAM | END_HEADERS: :method GET, :scheme http, :path / (HPACK static table 2, 6, 4),
    // :authority "x" (literal, name from static entry 1).
    socket.write(frame(0x1, 0x5, 1, Uint8Array.of(0x82, 0x86, 0x84, 0x41, 0x01, 0x78)));
    // Upper bound only: with the gap the callbacks all run at once; once Deno is fixed they never do.
    const outcome = await Promise.race([
      done,
      new Promise<"stalled">((r) => timer = setTimeout(() => r("stalled"), 10_000)),
    ]);
    assert.equal(
      outcome,
      "acknowledged",
      `Deno now holds http2 write callbacks for flow control (${acknowledged} bytes acknowledged): ` +
        "send_backlog.ts can go",
    );
    assert.ok(received < CHUNK * CHUNKS / 4, `the client's window let ${received} bytes through`);
  } finally {
    clearTimeout(timer);
    socket.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
