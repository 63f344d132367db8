/**
 * One listening socket that tells protocols apart: cleartext connections opening with the HTTP/2 preface
 * (`PRI * HTTP/2.0`, what gRPC clients send with prior knowledge) go to the HTTP/2 side, everything else to
 * HTTP/1.1. With TLS, ALPN decides (`h2` or `http/1.1`; no ALPN → the preface is sniffed), and client
 * certificates are checked here before any byte reaches a server.
 *
 * @example
 * ```ts
 * import http from "node:http";
 * import http2 from "node:http2";
 * import { Listener } from "./listener.ts";
 * const h2server = http2.createServer((_req, res) => res.end("h2"));
 * const h1server = http.createServer((_req, res) => res.end("h1"));
 * const listener = new Listener({
 *   socketAddress: "127.0.0.1:0",
 *   onHttp2: (socket) => h2server.emit("connection", socket),
 *   onHttp1: (socket) => h1server.emit("connection", socket),
 * });
 * const { port } = await listener.listen();
 * const res = await fetch(`http://127.0.0.1:${port}/`);
 * console.log(await res.text()); // h1
 * listener.destroyConnections();
 * await listener.close();
 * ```
 * @module
 */
import net from "node:net";
import tls from "node:tls";
import { CairnError, Code } from "../util/error.ts";
import type { ListenerTls } from "./tls.ts";
import { handOverSniffed, verifyClientCertificate } from "./deno_compat/mod.ts";
import { markVerifiedClient } from "./peer.ts";
import type { TransportLog } from "./types.ts";

/** The connection preface every HTTP/2 client sends first (RFC 9113 §3.4). */
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** Default: a connection that sends nothing for this long is dropped before any protocol is chosen. */
const SNIFF_TIMEOUT_MS = 10_000;

/** Options of {@linkcode Listener}. */
export interface ListenerOptions {
  readonly socketAddress: string;
  readonly tls?: ListenerTls | undefined;
  readonly onHttp2: (socket: net.Socket) => void;
  readonly onHttp1: (socket: net.Socket) => void;
  /** Takes a TLS connection whose client certificate failed (default: destroy it). */
  readonly onRefused?: ((socket: tls.TLSSocket, reason: string) => void) | undefined;
  /** A connection that sends no protocol preface (or first request bytes) within this is dropped. Default 10 s. */
  readonly sniffTimeoutMs?: number | undefined;
  readonly log?: TransportLog | undefined;
}

/** A host and port a listener is bound to. */
export interface BoundAddress {
  readonly host: string;
  readonly port: number;
}

/** Splits a NativeLink `socket_address` (`host:port`, `[v6]:port`, `:port`) into host and port. */
export function parseSocketAddress(address: string): BoundAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(address.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot listen on "${address}": socket_address must be host:port`,
    );
  }
  const host = m[1] ?? m[2] ?? "";
  return { host: host === "" ? "0.0.0.0" : host, port };
}

/** A listening socket dispatching connections to HTTP/2 or HTTP/1.1. */
export class Listener {
  readonly #options: ListenerOptions;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #address: BoundAddress | undefined;

  constructor(options: ListenerOptions) {
    this.#options = options;
    const t = options.tls;
    if (t) {
      this.#server = tls.createServer({
        cert: t.cert,
        key: t.key,
        ALPNProtocols: ["h2", "http/1.1"],
        handshakeTimeout: options.sniffTimeoutMs ?? SNIFF_TIMEOUT_MS,
        ...(t.clientCas ? { requestCert: true, rejectUnauthorized: false, ca: t.clientCaPem } : {}),
      });
      this.#server.on("secureConnection", (socket: tls.TLSSocket) => this.#onSecure(socket));
      this.#server.on(
        "tlsClientError",
        (err: Error) => options.log?.debug(`TLS handshake failed: ${err.message}`),
      );
      this.#server.on("connection", (socket: net.Socket) => this.#track(socket));
    } else {
      this.#server = net.createServer((socket) => {
        this.#track(socket);
        this.#sniff(socket);
      });
    }
  }

  /** Where the listener is bound (after {@linkcode Listener.listen}). */
  get address(): BoundAddress | undefined {
    return this.#address;
  }

  /** Open connections (any protocol). */
  get connections(): ReadonlySet<net.Socket> {
    return this.#sockets;
  }

  /** Binds the socket. */
  listen(): Promise<BoundAddress> {
    const { host, port } = parseSocketAddress(this.#options.socketAddress);
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        reject(
          new CairnError(
            Code.Unavailable,
            `Cannot listen on "${this.#options.socketAddress}": ${err.message}`,
            {
              cause: err,
            },
          ),
        );
      };
      this.#server.once("error", onError);
      this.#server.listen(port, host, () => {
        this.#server.off("error", onError);
        const a = this.#server.address() as net.AddressInfo;
        this.#address = { host: a.address, port: a.port };
        resolve(this.#address);
      });
    });
  }

  /** Stops accepting connections; resolves once the listening socket is closed and all connections are gone. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
    });
  }

  /** Destroys every open connection. */
  destroyConnections(): void {
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on("error", ignore);
    socket.once("close", () => this.#sockets.delete(socket));
  }

  #onSecure(socket: tls.TLSSocket): void {
    socket.on("error", ignore);
    const cas = this.#options.tls?.clientCas;
    if (cas) {
      const problem = verifyClientCertificate(socket, cas);
      if (problem !== undefined) {
        this.#options.log?.debug(`Refused a TLS client: ${problem}`);
        if (this.#options.onRefused) this.#options.onRefused(socket, problem);
        else socket.destroy();
        return;
      }
      markVerifiedClient(socket);
    }
    if (socket.alpnProtocol === "h2") this.#options.onHttp2(socket);
    else if (socket.alpnProtocol === "http/1.1") this.#options.onHttp1(socket);
    else this.#sniff(socket);
  }

  #sniff(socket: net.Socket): void {
    let seen: Buffer | undefined;
    const timer = setTimeout(() => socket.destroy(), this.#options.sniffTimeoutMs ?? SNIFF_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      seen = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const isPreface = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isPreface && n < PREFACE.length) return;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      if (isPreface) {
        socket.pause();
        socket.unshift(seen);
        this.#options.onHttp2(socket);
        socket.resume();
      } else {
        handOverSniffed(socket, seen, this.#options.onHttp1);
      }
    };
    const onClose = () => clearTimeout(timer);
    socket.on("data", onData);
    socket.once("close", onClose);
  }
}

function ignore(): void {}
