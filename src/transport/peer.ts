/**
 * Who is on the other end of a request. HTTP/1.1 connections reach the HTTP/1.1 server through a loopback
 * relay (see `deno_compat/h1_relay.ts`), so `req.socket` there is the relay's inner socket: this module maps it
 * back to the client's own socket (remote address, TLS state, client certificate). The identity a handler sees
 * is the subject of a client certificate the listener verified (mTLS): gRPC and Connect/gRPC-Web calls carry it
 * in their context values under {@linkcode kPeer}; plain HTTP routes receive it as their second argument.
 *
 * @example
 * ```ts
 * import net from "node:net";
 * import { peerOf, peerSocket } from "./peer.ts";
 * const socket = new net.Socket();
 * console.log(peerSocket(socket) === socket, peerOf(socket).clientCertSubjectCN); // true undefined
 * ```
 * @module
 */
import type net from "node:net";
import type { PeerCertificate, TLSSocket } from "node:tls";
import { createContextKey } from "@connectrpc/connect";

/** What the transport knows about a caller. */
export interface PeerInfo {
  /** The CN of the client certificate the listener verified against `client_ca_file` (mTLS). */
  readonly clientCertSubjectCN?: string | undefined;
}

const NO_PEER: PeerInfo = Object.freeze({});

/** Context-value key of the caller's {@linkcode PeerInfo}. */
export const kPeer = createContextKey<PeerInfo>(NO_PEER, { description: "cairn.peer" });

/** Where a verified socket carries its peer (a property: HTTP/2 hands handlers a proxy of the socket). */
const kPeerInfo = Symbol("cairn.peerInfo");
type Tagged = { [kPeerInfo]?: PeerInfo };

const relayed = new WeakMap<object, net.Socket>();

/** Records the identity of a TLS socket whose client certificate passed verification. */
export function markVerifiedClient(socket: TLSSocket): void {
  const cert = socket.getPeerCertificate?.() as PeerCertificate | undefined;
  const cn = cert?.subject?.CN;
  const first = Array.isArray(cn) ? cn[0] : cn;
  if (typeof first === "string" && first !== "") {
    (socket as Tagged)[kPeerInfo] = Object.freeze({ clientCertSubjectCN: first });
  }
}

/** Records that the relay's inner socket `inner` (as accepted by the HTTP/1.1 server) carries `outer`. */
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

/** The verified identity behind a server-side socket (an inner relay socket resolves to its client's). */
export function peerOf(socket: net.Socket | null | undefined): PeerInfo {
  try {
    if (!socket) return NO_PEER;
    const own = (socket as Tagged)[kPeerInfo];
    if (own !== undefined) return own;
    const outer = relayed.get(socket);
    return (outer as Tagged | undefined)?.[kPeerInfo] ?? NO_PEER;
  } catch {
    return NO_PEER; // an HTTP/2 socket proxy whose session is already gone
  }
}

/** Whether `address` is a loopback address (IPv4 127/8, `::1`, or v4-mapped 127/8). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address.startsWith("127.") || address === "::1" || address.startsWith("::ffff:127.");
}
