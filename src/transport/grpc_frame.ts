/**
 * The gRPC length-prefixed message framing: one flag byte (bit 0: compressed), a 4-byte big-endian length,
 * then the message bytes.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameParser } from "./grpc_frame.ts";
 * const parser = new FrameParser(4 << 20);
 * parser.push(encodeFrame(new Uint8Array([1, 2, 3]), false));
 * parser.next(); // { compressed: false, data: Uint8Array [1, 2, 3] }
 * ```
 * @module
 */
import { CairnError, Code } from "../util/error.ts";

/** Bytes in a frame header. */
export const FRAME_HEADER_BYTES = 5;

/** One parsed frame. */
export interface Frame {
  readonly compressed: boolean;
  readonly data: Uint8Array;
}

/** Frames `payload` (copying it behind a 5-byte header). */
export function encodeFrame(payload: Uint8Array, compressed: boolean): Uint8Array {
  const len = payload.byteLength;
  const out = new Uint8Array(FRAME_HEADER_BYTES + len);
  out[0] = compressed ? 1 : 0;
  out[1] = len >>> 24;
  out[2] = (len >>> 16) & 0xff;
  out[3] = (len >>> 8) & 0xff;
  out[4] = len & 0xff;
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** Just the 5-byte header of a frame of `length` bytes (to write large payloads without copying). */
export function frameHeader(length: number, compressed: boolean): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES);
  out[0] = compressed ? 1 : 0;
  new DataView(out.buffer).setUint32(1, length);
  return out;
}

/**
 * Parses exactly one frame from a whole request body (the unary case).
 * Throws INTERNAL for a truncated or trailing frame, RESOURCE_EXHAUSTED when it is larger than `maxBytes`.
 */
export function parseSingleFrame(body: Uint8Array, maxBytes: number): Frame {
  if (body.byteLength < FRAME_HEADER_BYTES) {
    throw new CairnError(
      Code.Internal,
      body.byteLength === 0
        ? "Invalid gRPC request: the request has no message"
        : `Invalid gRPC request: truncated frame header (${body.byteLength} of 5 bytes)`,
    );
  }
  const flags = body[0]!;
  const len = ((body[1]! << 24) | (body[2]! << 16) | (body[3]! << 8) | body[4]!) >>> 0;
  checkFrame(flags, len, maxBytes);
  const end = FRAME_HEADER_BYTES + len;
  if (body.byteLength < end) {
    throw new CairnError(
      Code.Internal,
      `Invalid gRPC request: truncated frame (${body.byteLength - FRAME_HEADER_BYTES} of ${len} bytes)`,
    );
  }
  if (body.byteLength > end) {
    throw new CairnError(Code.Internal, "Invalid gRPC request: a unary call carries more than one message");
  }
  return { compressed: (flags & 1) === 1, data: body.subarray(FRAME_HEADER_BYTES) };
}

function checkFrame(flags: number, len: number, maxBytes: number): void {
  if ((flags & 0xfe) !== 0) {
    throw new CairnError(Code.Internal, `Invalid gRPC request: unknown frame flags 0x${flags.toString(16)}`);
  }
  if (len > maxBytes) {
    throw new CairnError(
      Code.ResourceExhausted,
      `Cannot accept a gRPC message of ${len} bytes: larger than max_decoding_message_size (${maxBytes})`,
    );
  }
}

/**
 * Incremental frame parser for streams: `push` chunks as they arrive, take whole frames with `next`.
 * Holds at most one frame plus one chunk.
 */
export class FrameParser {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #maxBytes: number;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Bytes received but not yet returned as a frame; non-zero at end of stream means a truncated frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Adds received bytes. */
  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.byteLength;
  }

  /** The next whole frame, or `undefined` when more bytes are needed. */
  next(): Frame | undefined {
    if (this.#buffered < FRAME_HEADER_BYTES) return undefined;
    const head = this.#peek(FRAME_HEADER_BYTES);
    const flags = head[0]!;
    const len = ((head[1]! << 24) | (head[2]! << 16) | (head[3]! << 8) | head[4]!) >>> 0;
    checkFrame(flags, len, this.#maxBytes);
    if (this.#buffered < FRAME_HEADER_BYTES + len) return undefined;
    this.#take(FRAME_HEADER_BYTES);
    return { compressed: (flags & 1) === 1, data: this.#take(len) };
  }

  /** Throws INTERNAL when a partial frame is left over (call at end of stream). */
  finish(): void {
    if (this.#buffered > 0) {
      throw new CairnError(
        Code.Internal,
        `Invalid gRPC request: the stream ended inside a frame (${this.#buffered} bytes left over)`,
      );
    }
  }

  #peek(n: number): Uint8Array {
    const first = this.#chunks[0]!;
    if (first.byteLength >= n) return first;
    const out = new Uint8Array(n);
    let off = 0;
    for (const c of this.#chunks) {
      const k = Math.min(c.byteLength, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (off === n) break;
    }
    return out;
  }

  #take(n: number): Uint8Array {
    this.#buffered -= n;
    const first = this.#chunks[0];
    if (first === undefined) return new Uint8Array(0);
    if (first.byteLength === n) {
      this.#chunks.shift();
      return first;
    }
    if (first.byteLength > n) {
      this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.byteLength, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.byteLength) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }
}

const TIMEOUT_UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

/**
 * Parses a `grpc-timeout` header (`1-8 digits` + unit H/M/S/m/u/n) into milliseconds.
 * Returns `undefined` when absent; throws INVALID_ARGUMENT when malformed.
 */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const unit = TIMEOUT_UNIT_MS[value.charAt(value.length - 1)];
  const digits = value.slice(0, -1);
  if (unit === undefined || digits.length === 0 || digits.length > 8 || !/^\d+$/.test(digits)) {
    throw new CairnError(Code.InvalidArgument, `Invalid grpc-timeout header "${value}"`);
  }
  return Number(digits) * unit;
}
