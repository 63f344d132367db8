/**
 * The HTTP/1.1 relay. Deno's `node:http` server closes every connection handed to it with
 * `server.emit("connection", socket)` after its first response while the server itself is not listening
 * (denoland/deno#35609: a Deno-only branch of `resOnFinish` destroys the socket of a server that is not
 * listening; fix proposed in denoland/deno#35614). Bazel's pooled HTTP cache client then loses uploads on the
 * closed connection. Whether the bytes read to tell protocols apart were put back (`unshift`) or re-emitted
 * makes no difference; whether the response is chunked makes none either.
 *
 * So each HTTP/1.1 client connection is relayed to the `node:http` server listening on a loopback port. That
 * port accepts only the relay's own connections: an accepted connection must come from the local port of a
 * socket the relay dialled (any other is dropped at once, its requests refused), and `peer.ts` maps the inner
 * socket back to the client's own. Deno's `node:http` does not enforce `headersTimeout` either, so the relay
 * watches header and idle timeouts itself.
 *
 * `h1_emit_keepalive_test.ts` asserts the gap; when it fails, Deno keeps emitted connections alive: hand
 * HTTP/1.1 connections to the server with `emit("connection")` and remove this relay.
 *
 * @example
 * ```ts
 * import http from "node:http";
 * import { createH1Relay } from "./h1_relay.ts";
 * const h1 = http.createServer((_req, res) => res.end("ok"));
 * const relay = createH1Relay(h1, { headerTimeoutMs: 10_000, idleConnectionMs: 60_000 });
 * await relay.listen();
 * // listener: onHttp1: relay.relay
 * await new Promise((r) => h1.close(r));
 * ```
 * @module
 */
import type http from "node:http";
import net from "node:net";
import { countEvent } from "../guard.ts";
import { bindRelayPeer, isLoopback } from "../peer.ts";

/** The timeouts the relay enforces (see `ResolvedLimits` in `../guard.ts`). */
export interface H1RelayLimits {
  readonly headerTimeoutMs: number;
  readonly idleConnectionMs: number;
}

/** Watches one relayed HTTP/1.1 client connection for its header and idle timeouts. */
export interface RelayWatch {
  requestStarted(): void;
  requestDone(): void;
}

/** Relays HTTP/1.1 client connections to `h1`. */
export interface H1Relay {
  /** Binds `h1` on a loopback port (before the first {@linkcode H1Relay.relay}). */
  listen(): Promise<void>;
  /** Relays one client connection. */
  readonly relay: (socket: net.Socket) => void;
  /** The watch of a relayed client connection: tell it when a request starts and ends. */
  watchOf(outer: net.Socket): RelayWatch | undefined;
}

/** Sets up the relay in front of `h1` (which it will make listen on a loopback port). */
export function createH1Relay(h1: http.Server, limits: H1RelayLimits): H1Relay {
  /** Outer sockets by the local port of the relay socket dialled for them (until the inner side is accepted). */
  const dialled = new Map<number, net.Socket>();
  /** Inner connections accepted before their relay socket reported its local port. */
  const unmatched = new Map<number, net.Socket>();
  const match = (inner: net.Socket, outer: net.Socket) => {
    bindRelayPeer(inner, outer);
    dialled.delete(inner.remotePort!);
    unmatched.delete(inner.remotePort!);
  };
  h1.prependListener("connection", (inner: net.Socket) => {
    const port = inner.remotePort;
    const outer = port === undefined ? undefined : dialled.get(port);
    if (outer !== undefined && isLoopback(inner.remoteAddress)) return match(inner, outer);
    if (port === undefined || !isLoopback(inner.remoteAddress)) return refuseForeign(inner);
    unmatched.set(port, inner);
    inner.once("close", () => {
      if (unmatched.get(port) === inner) unmatched.delete(port);
    });
    setTimeout(() => {
      if (unmatched.get(port) === inner) {
        unmatched.delete(port);
        refuseForeign(inner);
      }
    }, 2000).unref?.();
  });
  const refuseForeign = (inner: net.Socket) => {
    countEvent("h1_foreign_connection_refused");
    inner.destroy();
  };
  /**
   * Deno's node:http does not enforce `headersTimeout` (a half-sent header stays open), so the relay watches each
   * client connection itself: with no request in flight, its next request's headers must arrive within
   * `header_timeout_s` of its first byte (or of the connection's start), and a connection with nothing in
   * flight is closed after `idle_connection_timeout_s`.
   */
  const relayWatches = new WeakMap<net.Socket, RelayWatch>();
  const watchRelay = (socket: net.Socket): RelayWatch => {
    let inFlight = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let headerPhase = true;
    const arm = (ms: number, event: string) => {
      if (timer !== undefined) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = undefined;
        if (inFlight > 0) return;
        countEvent(event);
        socket.destroy();
      }, ms);
    };
    arm(limits.headerTimeoutMs, "header_timeout");
    socket.on("data", () => {
      if (inFlight === 0 && !headerPhase) {
        headerPhase = true;
        arm(limits.headerTimeoutMs, "header_timeout");
      }
    });
    socket.once("close", () => {
      if (timer !== undefined) clearTimeout(timer);
    });
    const watch: RelayWatch = {
      requestStarted() {
        inFlight++;
        if (timer !== undefined) clearTimeout(timer);
        timer = undefined;
      },
      requestDone() {
        if (--inFlight > 0 || socket.destroyed) return;
        headerPhase = false;
        arm(limits.idleConnectionMs, "idle_connection_closed");
      },
    };
    relayWatches.set(socket, watch);
    return watch;
  };
  let h1Port: number | undefined;
  const relay = (socket: net.Socket) => {
    watchRelay(socket);
    const upstream = net.connect({ port: h1Port!, host: "127.0.0.1", noDelay: true });
    upstream.once("connect", () => {
      const port = upstream.localPort;
      if (port === undefined) return upstream.destroy();
      const early = unmatched.get(port);
      if (early !== undefined && isLoopback(early.remoteAddress)) match(early, socket);
      else dialled.set(port, socket);
      upstream.once("close", () => {
        if (dialled.get(port) === socket) dialled.delete(port);
      });
    });
    socket.setNoDelay?.(true);
    // The client leaving drops the inner connection at once; the inner side closing ends the client's
    // connection gracefully (a TLS close_notify, then FIN) so pooled clients see it closed, not reset.
    socket.on("error", () => upstream.destroy()).on("close", () => upstream.destroy());
    upstream.on("error", () => socket.destroy()).on("close", () => {
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref?.();
    });
    socket.pipe(upstream);
    upstream.pipe(socket);
  };
  return {
    listen: async () => {
      h1Port = await new Promise<number>((resolve, reject) => {
        h1.once("error", reject);
        h1.listen(0, "127.0.0.1", () => {
          h1.off("error", reject);
          resolve((h1.address() as net.AddressInfo).port);
        });
      });
    },
    relay,
    watchOf: (outer) => relayWatches.get(outer),
  };
}
