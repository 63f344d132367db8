/**
 * Workarounds for gaps in Deno's Node compatibility, one file each, each naming the Deno issue it works
 * around and paired with a test that fails the day Deno closes the gap (so the workaround can go):
 *
 * - `h1_relay.ts`: HTTP/1.1 connections are relayed to a listening `node:http` server (denoland/deno#35609).
 * - `sniffed_bytes.ts`: how the listener hands the bytes it read to tell protocols apart to HTTP/1.1.
 * - `send_backlog.ts`: HTTP/2 send back-pressure from the socket's byte count (denoland/deno#36044).
 * - `client_cert.ts`: the hand-written client-certificate check (denoland/deno#34366).
 * - `deno_serve_trailers.ts`: gRPC trailers on `Deno.serve` (no public API in Deno 2.9.0).
 * - `deno_serve_reset.ts`: `Deno.serve` answers that cannot panic on a reset HTTP/2 stream
 *   (denoland/deno#36046, fixed in Deno 2.9.3).
 *
 * @example
 * ```ts
 * import { SendBacklog } from "./mod.ts";
 * const backlog = new SendBacklog(4 << 20);
 * console.log(backlog.backlog(undefined as never)); // 0
 * ```
 * @module
 */
export { verifyChain, verifyClientCertificate } from "./client_cert.ts";
export { createH1Relay, type H1Relay, type H1RelayLimits, type RelayWatch } from "./h1_relay.ts";
export { resetSafeResponse } from "./deno_serve_reset.ts";
export { responseWithTrailers, type TrailingResponse } from "./deno_serve_trailers.ts";
export { SendBacklog } from "./send_backlog.ts";
export { handOverSniffed } from "./sniffed_bytes.ts";
