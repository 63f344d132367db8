/**
 * Send-side back-pressure for HTTP/2 streams under Deno: works around denoland/deno#36044 ("apply
 * backpressure to http2 stream writes", merged upstream after Deno 2.9.0). In Deno 2.9.0 `node:http2`
 * completes stream writes at once (return value, 'drain', write callbacks), whatever the peer's
 * flow-control window, so a slow reader would make the server queue without bound. The bytes that really
 * left are visible on the session's socket (`bytesWritten` less what its write buffer still holds), which has
 * no event of its own: writers note what they queued and poll every 5 ms while a session's backlog (queued
 * minus sent) is above a limit.
 *
 * `send_backlog_test.ts` asserts the gap; when it fails, Deno holds write callbacks until the bytes are
 * framed: wait on the write callback (or 'drain') instead, and remove this module.
 *
 * @example
 * ```ts
 * import { SendBacklog } from "./send_backlog.ts";
 * const backlog = new SendBacklog(2 << 20);
 * // after stream.write(frame): await backlog.wait(stream.session, frame.byteLength, signal);
 * ```
 * @module
 */
import type { Http2Session } from "node:http2";

interface SessionCount {
  /** Bytes written by us through the session's streams. */
  queued: number;
  /** socket.bytesWritten when counting began. */
  base: number;
}

const POLL_MS = 5;

/** Tracks queued-but-unsent bytes per HTTP/2 session. */
export class SendBacklog {
  readonly #limit: number;
  readonly #sessions = new WeakMap<Http2Session, SessionCount>();

  constructor(limitBytes: number) {
    this.#limit = limitBytes;
  }

  /** Bytes queued on `session` that have not reached the socket yet. */
  backlog(session: Http2Session): number {
    const c = this.#sessions.get(session);
    if (!c) return 0;
    return c.queued - (sentBytes(session) - c.base);
  }

  /**
   * Forgets up to `bytes` of `session`'s backlog: the bytes a stream queued before its client reset it.
   * HTTP/2 drops the unsent data of a reset stream, so they never reach the socket; counted on, they would
   * keep the session above its limit and stall every later writer on that connection.
   */
  forgive(session: Http2Session | undefined, bytes: number): void {
    if (!session || bytes <= 0) return;
    const c = this.#sessions.get(session);
    if (!c) return;
    c.queued -= Math.min(bytes, Math.max(0, this.backlog(session)));
  }

  /** Records `bytes` just written on `session`, then waits until its backlog is under the limit. */
  async wait(session: Http2Session | undefined, bytes: number, isGone: () => boolean): Promise<void> {
    if (!session) return;
    let c = this.#sessions.get(session);
    if (!c) {
      c = { queued: 0, base: sentBytes(session) };
      this.#sessions.set(session, c);
    }
    c.queued += bytes;
    while (c.queued - (sentBytes(session) - c.base) > this.#limit) {
      if (isGone() || session.destroyed || session.closed && session.socket == null) return;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
}

/**
 * Bytes of `session` that reached the kernel: the socket's `bytesWritten` counts what is still queued in the
 * socket's own write buffer too (as in Node), which a corked socket or a slow reader fills (measured: 30 MiB
 * of a 1 GiB Read), so that part is taken off.
 */
function sentBytes(session: Http2Session): number {
  const socket = session.socket as { bytesWritten?: number; writableLength?: number } | undefined;
  return (socket?.bytesWritten ?? 0) - (socket?.writableLength ?? 0);
}
