/**
 * The hand-written client-certificate check (mTLS) of the listener. The listener asks for a client certificate
 * with `rejectUnauthorized: false` and decides here, so that a refused client gets an answer (gRPC
 * UNAUTHENTICATED or HTTP 401) instead of a dropped handshake. Node would let the listener read the TLS stack's
 * own verdict (`socket.authorized`); Deno's was wrong for a client that sent no certificate
 * (denoland/deno#34366: `authorized` true with `requestCert` and `rejectUnauthorized: false`), so the chain is
 * walked by hand. `client_cert_test.ts` compares Deno's verdict with this one; while it passes, the walk can
 * be replaced by `socket.authorized` (Deno 2.9.0 agrees for a valid, a foreign and a missing certificate).
 *
 * @example
 * ```ts ignore
 * import { verifyClientCertificate } from "./client_cert.ts";
 * // on "secureConnection": const problem = verifyClientCertificate(socket, listenerTls.clientCas!);
 * ```
 * @module
 */
import { X509Certificate } from "node:crypto";
import type { PeerCertificate, TLSSocket } from "node:tls";

/**
 * Checks the client certificate of a TLS connection against trusted CAs: present, within its validity
 * period, and signed (directly or through the intermediates the client sent) by one of `cas`.
 * Returns `undefined` when it passes, else the reason it does not.
 */
export function verifyClientCertificate(
  socket: TLSSocket,
  cas: readonly X509Certificate[],
): string | undefined {
  const peer = socket.getPeerCertificate(true) as PeerCertificate & { issuerCertificate?: PeerCertificate };
  if (!peer || !peer.raw || peer.raw.length === 0) return "the client sent no certificate";
  return verifyChain(peer, cas, Date.now());
}

/** Verifies a peer certificate chain (as `getPeerCertificate(true)` returns it). */
export function verifyChain(
  peer: PeerCertificate & { issuerCertificate?: PeerCertificate },
  cas: readonly X509Certificate[],
  now: number,
): string | undefined {
  let current: PeerCertificate & { issuerCertificate?: PeerCertificate } = peer;
  let cert = new X509Certificate(current.raw);
  for (let depth = 0; depth < 8; depth++) {
    const dated = checkDates(cert, now);
    if (dated) return dated;
    for (const ca of cas) {
      if (cert.checkIssued(ca) && cert.verify(ca.publicKey)) return checkDates(ca, now);
    }
    const next = current.issuerCertificate;
    if (!next || next === current || !next.raw || next.raw.equals(current.raw)) break;
    const issuer = new X509Certificate(next.raw);
    if (!issuer.ca || !cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) break;
    current = next;
    cert = issuer;
  }
  return `the client certificate "${peer.subject?.CN ?? "?"}" is not signed by a trusted CA`;
}

function checkDates(cert: X509Certificate, now: number): string | undefined {
  if (now < Date.parse(cert.validFrom)) {
    return `certificate "${cert.subject}" is not valid before ${cert.validFrom}`;
  }
  if (now > Date.parse(cert.validTo)) return `certificate "${cert.subject}" expired on ${cert.validTo}`;
  return undefined;
}
