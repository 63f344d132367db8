/**
 * The client's own connection behind a request. HTTP/1.1 connections reach the HTTP/1.1 server through a
 * loopback relay (see `server.ts`), so `req.socket` there is the relay's inner socket; this module maps it
 * back to the client's socket (remote address, TLS state, client certificate).
 *
 * @example
 * ```ts
 * import { peerSocket } from "./peer.ts";
 * const peer = peerSocket(req.socket);
 * console.log(peer.remoteAddress, (peer as { encrypted?: boolean }).encrypted === true);
 * ```
 * @module
 */
import type net from "node:net";

const relayed = new WeakMap<object, net.Socket>();

/** Records that the relay's inner socket `inner` carries the client connection `outer`. */
export function bindRelayPeer(inner: net.Socket, outer: net.Socket): void {
  relayed.set(inner, outer);
}

/** The client socket an inner relay socket carries; undefined for a socket the relay did not dial. */
export function relayPeer(inner: net.Socket): net.Socket | undefined {
  return relayed.get(inner);
}

/** The client's own socket behind `socket` (itself unless it is a relay's inner socket). */
export function peerSocket<S extends object>(socket: S): S | net.Socket {
  return relayed.get(socket) ?? socket;
}

/** Whether `address` is a loopback address (IPv4 127/8, `::1`, or v4-mapped 127/8). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address.startsWith("127.") || address === "::1" || address.startsWith("::ffff:127.");
}
