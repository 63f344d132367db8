/**
 * The reset crash of the `Deno.serve` path (listener `server: "deno_serve"`), through the real `main.ts` on
 * loopback: Deno 2.9.0 aborts the process when a handler answers an HTTP/2 stream the client reset while the
 * handler ran (denoland/deno#36046; `src/transport/deno_compat/deno_serve_reset.ts`). An attacker process
 * (`h2_attacker.ts reset-mid-handler`) sends Connect, gRPC-Web, gRPC, HTTP cache PUT/GET/HEAD, `/metrics`,
 * `/status` and CORS requests over 4 connections and resets each while its handler waits for the rest of its
 * body (or answers); the server must stay up, a victim's GetCapabilities must answer within a load-scaled
 * bound, and the process must still exit 0 on SIGTERM, also when SIGTERM comes in the middle of the attack.
 *
 * @example
 * ```sh
 * deno test --allow-all tests/security/deno_serve_reset_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { memoryCacheConfig, startCairnProcess } from "../fixtures/cairn_process.ts";
import { loadScaledBound } from "../fixtures/wait.ts";
import { runAttacker } from "./attacker_process.ts";

const CAPABILITIES = "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities";

/** Runs `h2_attacker.ts reset-mid-handler` on 4 connections. */
function resetMidHandler(port: number, streams: number): { started: Promise<void>; done: Promise<string> } {
  return runAttacker(["reset-mid-handler", String(port), "4", String(streams)]);
}

/** One unary gRPC GetCapabilities on `session`; resolves with its grpc-status and how long it took (ms). */
function getCapabilities(session: http2.ClientHttp2Session): Promise<{ status: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const st = session.request({
      ":method": "POST",
      ":path": CAPABILITIES,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let status: number | undefined;
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined && status === undefined) {
        status = Number(h["grpc-status"]);
        resolve({ status, ms: performance.now() - t0 });
      }
    };
    st.on("response", take);
    st.on("trailers", take);
    st.on("data", () => {});
    st.on("error", reject);
    st.on(
      "close",
      () => status === undefined && reject(new Error(`closed without grpc-status (rst ${st.rstCode})`)),
    );
    st.end(new Uint8Array(5)); // one empty message
  });
}

Deno.test("Deno.serve path: HTTP/2 requests of every kind reset mid-handler leave main.ts up and serving", async () => {
  const cairn = await startCairnProcess({
    config: memoryCacheConfig({ listener: { socket_address: "127.0.0.1:0", server: "deno_serve" } }),
  });
  try {
    const victim = http2.connect(cairn.httpUrl);
    victim.on("error", () => {});
    let baseline = 0;
    for (let i = 0; i < 3; i++) {
      const r = await getCapabilities(victim);
      assert.equal(r.status, 0);
      baseline = Math.max(baseline, r.ms);
    }
    const bound = loadScaledBound(1000, 4 * baseline);

    const attack = resetMidHandler(cairn.port, 480);
    await attack.started;
    const during = await getCapabilities(victim);
    const text = await attack.done;
    const after = await getCapabilities(victim);
    victim.close();

    const sent = Number(/sent (\d+)/.exec(text)?.[1] ?? 0);
    assert.ok(sent >= 1000, `only ${sent} requests reset: ${text}`);
    assert.ok(cairn.alive(), `main.ts died:\n${cairn.logs().slice(-3000)}`);
    assert.doesNotMatch(cairn.logs(), /panicked|Uncaught/);
    assert.equal(during.status, 0);
    assert.equal(after.status, 0);
    assert.ok(
      during.ms < bound,
      `GetCapabilities during the attack took ${Math.round(during.ms)} ms (bound ${bound})`,
    );
    assert.ok(
      after.ms < bound,
      `GetCapabilities after the attack took ${Math.round(after.ms)} ms (bound ${bound})`,
    );
  } finally {
    await cairn.stop(20_000); // throws unless main.ts exits 0 (a panic exits otherwise)
  }
});

Deno.test("Deno.serve path: SIGTERM while requests are being reset mid-handler, main.ts still exits 0", async () => {
  const cairn = await startCairnProcess({
    config: memoryCacheConfig({ listener: { socket_address: "127.0.0.1:0", server: "deno_serve" } }),
  });
  let attack: { started: Promise<void>; done: Promise<string> } | undefined;
  try {
    attack = resetMidHandler(cairn.port, 4000);
    await attack.started;
  } finally {
    // Closing answers what is in flight, then stops Deno.serve: nothing may be answered late (Deno would
    // answer it with a static body and panic on a reset stream). stop() throws unless main.ts exits 0.
    await cairn.stop(20_000);
    await attack?.done; // the attacker ends once its connections are refused
  }
  assert.doesNotMatch(cairn.logs(), /panicked|Uncaught/);
});
