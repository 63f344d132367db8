/**
 * How the listener hands the bytes it read to tell protocols apart to the HTTP/1.1 side: the connection first,
 * then the bytes as a `data` event (instead of putting them back with `unshift`, as for HTTP/2). This was
 * written for denoland/deno#35609 (Deno's `node:http` server closes an emitted connection after its first
 * response while it is not listening), wrongly put down to `unshift`: the gap is the same either way, and
 * `h1_relay.ts` works around it. Kept as it is because the relay reads its client through `data` events (a
 * `pipe`), for which both ways deliver the same bytes in the same order.
 *
 * `h1_emit_keepalive_test.ts` asserts the gap for each way of handing over; when it fails, hand the connection
 * to the HTTP/1.1 server directly (with `unshift`, like HTTP/2) and remove this module with the relay.
 *
 * @example
 * ```ts
 * import net from "node:net";
 * import { handOverSniffed } from "./sniffed_bytes.ts";
 * const socket = new net.Socket();
 * const onHttp1 = (s: net.Socket) => s.on("data", (b: Buffer) => console.log(b.length));
 * handOverSniffed(socket, Buffer.from("GET / HTTP/1.1\r\n"), onHttp1); // 16
 * ```
 * @module
 */
import type net from "node:net";

/** Hands `socket` to `onHttp1`, then replays `seen` (the bytes read off it so far) as a `data` event. */
export function handOverSniffed(
  socket: net.Socket,
  seen: Buffer,
  onHttp1: (socket: net.Socket) => void,
): void {
  onHttp1(socket);
  socket.emit("data", seen);
}
