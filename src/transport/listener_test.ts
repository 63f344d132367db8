import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { Listener } from "./listener.ts";

/** Sends `pieces` a little apart (so they arrive as separate reads) and returns all the server sent
 * until it closed the connection (every case below ends with the server closing it). */
async function exchange(port: number, pieces: string[]): Promise<Buffer> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise((r) => socket.once("connect", r));
  const got: Buffer[] = [];
  socket.on("data", (d: Buffer) => got.push(d));
  const ended = new Promise((r) => socket.once("close", r));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    for (const p of pieces) {
      await new Promise((r) => socket.write(p, r));
      // Pacing, not waiting for an event: the next piece goes out separately.
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.race([
      ended,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error("the server did not close the connection in 30 s")),
          30_000,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
  return Buffer.concat(got);
}

Deno.test("the listener tells HTTP/2 prior knowledge from HTTP/1.1, even when the first bytes trickle in", async () => {
  const seen: string[] = [];
  const h1 = http.createServer((_req, res) => res.end("h1"));
  const listener = new Listener({
    socketAddress: "127.0.0.1:0",
    onHttp2: (socket) => {
      seen.push("h2");
      socket.end("h2!");
    },
    onHttp1: (socket) => {
      seen.push("h1");
      h1.emit("connection", socket);
    },
  });
  const { port } = await listener.listen();
  try {
    const r1 = await exchange(port, ["PRI * HT", "TP/2.0\r\n\r\nSM\r\n\r\n"]);
    assert.equal(r1.toString(), "h2!");
    const r2 = await exchange(port, ["G", "ET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"]);
    assert.match(r2.toString(), /^HTTP\/1\.1 200[\s\S]*h1$/);
    const r3 = await exchange(port, ["PRX"]); // looks like the preface for 2 bytes, then does not
    assert.match(r3.toString(), /^HTTP\/1\.1 400/);
    assert.deepEqual(seen, ["h2", "h1", "h1"]);
  } finally {
    listener.destroyConnections();
    await listener.close();
  }
});
