/**
 * Who is on the other end of a connection, for handlers: the subject of a client certificate that the
 * listener verified (mTLS). gRPC calls and Connect/gRPC-Web calls carry it in their context values under
 * {@linkcode kPeer}; plain HTTP routes receive it as their second argument. HTTP/1.1 connections are piped
 * to an inner loopback server, so each inner connection is linked to the outer (TLS) socket it carries.
 *
 * @example
 * ```ts
 * import { kPeer } from "./peer.ts";
 * // in a handler
 * const cn = context.values.get(kPeer).clientCertSubjectCN; // undefined without a verified client certificate
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
/** Inner HTTP/1.1 connection (`innerLocalPort>innerServerPort`) → the outer socket it carries. */
const links = new Map<string, net.Socket>();

/** Records the identity of a TLS socket whose client certificate passed verification. */
export function markVerifiedClient(socket: TLSSocket): void {
  const cert = socket.getPeerCertificate?.() as PeerCertificate | undefined;
  const cn = cert?.subject?.CN;
  const first = Array.isArray(cn) ? cn[0] : cn;
  if (typeof first === "string" && first !== "") {
    (socket as Tagged)[kPeerInfo] = Object.freeze({ clientCertSubjectCN: first });
  }
}

/** Links an inner loopback connection (`inner`, already connected) to the outer socket it carries. */
export function linkInnerConnection(inner: net.Socket, outer: net.Socket): void {
  const key = `${inner.localPort}>${inner.remotePort}`;
  links.set(key, outer);
  inner.once("close", () => {
    if (links.get(key) === outer) links.delete(key);
  });
}

/** The peer of a server-side socket (an inner HTTP/1.1 connection resolves to its outer socket). */
export function peerOf(socket: net.Socket | null | undefined): PeerInfo {
  try {
    if (!socket) return NO_PEER;
    const own = (socket as Tagged)[kPeerInfo];
    if (own !== undefined) return own;
    if (links.size === 0) return NO_PEER;
    const outer = links.get(`${socket.remotePort}>${socket.localPort}`);
    return (outer as Tagged | undefined)?.[kPeerInfo] ?? NO_PEER;
  } catch {
    return NO_PEER; // an HTTP/2 socket proxy whose session is already gone
  }
}
