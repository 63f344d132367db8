/**
 * Runs the transport and service suites again on the `Deno.serve` server path: each file in its own
 * `deno test` process with `CAIRN_SERVER_PATH=deno_serve` (read by `createCairnServer` when a listener has no
 * `server` field; mTLS listeners stay on `node_http2`). The same assertions hold on both paths: exact gRPC
 * codes for bad input, deadlines and cancellation, back-pressure, graceful close, churn.
 *
 * @example
 * ```sh
 * deno test --allow-all tests/transport_deno_serve_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";

const FILES = [
  "transport_grpc_js_test.ts",
  "transport_http2_raw_test.ts",
  "transport_backpressure_test.ts",
  "transport_connect_test.ts",
  "transport_lifecycle_test.ts",
  "transport_tls_test.ts",
  "cache_services_test.ts",
  "churn_test.ts",
];

for (const file of FILES) {
  Deno.test(`on Deno.serve: ${file}`, async () => {
    const path = new URL(`./${file}`, import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["test", "--allow-all", "--no-check", path],
      env: { CAIRN_SERVER_PATH: "deno_serve", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.ok(!/Deno has panicked/.test(text), `Deno panicked running ${file} on Deno.serve:\n${text}`);
    assert.equal(out.code, 0, `${file} failed on the Deno.serve path:\n${text.slice(-6000)}`);
  });
}
