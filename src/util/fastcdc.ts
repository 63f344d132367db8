/**
 * FastCDC content-defined chunking (Xia et al., 2016) with normalized chunking.
 *
 * A 32-bit gear hash rolls over the bytes after the minimum chunk size; a cut is made where the hash's top
 * bits are all zero. Before the normal size a stricter mask (more bits) is used, after it a looser one, which
 * pulls chunk sizes towards the normal size. The gear table is generated deterministically, so the same bytes
 * always cut at the same places however the input is split into pieces.
 *
 * @example
 * ```ts
 * import { FastCdc } from "./fastcdc.ts";
 * const bytes = crypto.getRandomValues(new Uint8Array(60_000));
 * const chunks: Uint8Array[] = [];
 * const cdc = new FastCdc({ minSize: 4096, normalSize: 16384, maxSize: 65536 });
 * for (const chunk of cdc.push(bytes)) chunks.push(chunk);
 * for (const chunk of cdc.finish()) chunks.push(chunk);
 * console.log(chunks.reduce((n, c) => n + c.byteLength, 0)); // 60000
 * ```
 * @module
 */

/** Chunk size bounds of {@linkcode FastCdc}. */
export interface FastCdcOptions {
  /** No chunk is smaller than this, except the last one. */
  readonly minSize: number;
  /** The size chunks tend to. */
  readonly normalSize: number;
  /** No chunk is larger than this. */
  readonly maxSize: number;
}

/** The 256-entry gear table, from a fixed-seed mulberry32 generator (stable across versions). */
const GEAR: Int32Array = (() => {
  const table = new Int32Array(256);
  let seed = 0x43414952; // "CAIR"
  for (let i = 0; i < 256; i++) {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    table[i] = t ^ (t >>> 14);
  }
  return table;
})();

/** A mask of `bits` ones in the top bits of a 32-bit word (the bits that depend on the most bytes). */
function topMask(bits: number): number {
  const b = Math.max(1, Math.min(31, bits));
  return (~0 << (32 - b)) | 0;
}

/**
 * Finds the end of the first chunk of `data[0, length)`.
 *
 * `length` must be at most `maxSize` unless it is the end of the input. Returns `length` when no cut point is
 * found before it (the caller treats that as a cut only at `maxSize` or at the end of the input).
 */
export function findCutPoint(
  data: Uint8Array,
  length: number,
  options: FastCdcOptions,
  masks?: CutMasks,
): number {
  const { minSize, normalSize, maxSize } = options;
  const { small, large } = masks ?? cutMasks(normalSize);
  const end = Math.min(length, maxSize);
  if (end <= minSize) return end;
  const mid = Math.min(end, normalSize);
  // Two calls of one tight loop: V8 optimises this shape about three times better than one two-phase loop.
  const cut = scan(data, minSize, mid, small, 0);
  if (cut >= 0) return cut;
  const cut2 = scan(data, mid, end, large, rollTail(data, minSize, mid));
  return cut2 >= 0 ? cut2 : end;
}

/** Rolls the gear hash over `data[start, end)` from hash `h`; the index after the first cut, or -1. */
function scan(data: Uint8Array, start: number, end: number, mask: number, h: number): number {
  for (let i = start; i < end; i++) {
    h = ((h << 1) + GEAR[data[i]!]!) | 0;
    if ((h & mask) === 0) return i + 1;
  }
  return -1;
}

/** The gear hash after rolling over `data[start, end)` (only the last 32 bytes matter). */
function rollTail(data: Uint8Array, start: number, end: number): number {
  let h = 0;
  for (let i = Math.max(start, end - 32); i < end; i++) h = ((h << 1) + GEAR[data[i]!]!) | 0;
  return h;
}

/** The two masks of normalized chunking (level 2). */
export interface CutMasks {
  readonly small: number;
  readonly large: number;
}

/** Masks for a normal size: log2(normal) + 2 bits before it, log2(normal) - 2 bits after it. */
export function cutMasks(normalSize: number): CutMasks {
  const bits = Math.round(Math.log2(Math.max(2, normalSize)));
  return { small: topMask(bits + 2), large: topMask(bits - 2) };
}

/** Streaming FastCDC chunker: feed bytes with {@linkcode FastCdc.push}, then call {@linkcode FastCdc.finish}. */
export class FastCdc {
  readonly #options: FastCdcOptions;
  readonly #masks: CutMasks;
  #buf: Uint8Array;
  #fill = 0;

  constructor(options: FastCdcOptions) {
    const { minSize, normalSize, maxSize } = options;
    if (!(minSize > 0 && minSize <= normalSize && normalSize <= maxSize) || !Number.isSafeInteger(maxSize)) {
      throw new RangeError(
        `Invalid chunk sizes min ${minSize}, normal ${normalSize}, max ${maxSize}: need 0 < min <= normal <= max`,
      );
    }
    this.#options = options;
    this.#masks = cutMasks(normalSize);
    this.#buf = new Uint8Array(maxSize);
  }

  /** Adds bytes; yields every chunk completed by them (fresh arrays the caller may keep). */
  *push(data: Uint8Array): Generator<Uint8Array> {
    const max = this.#options.maxSize;
    let pos = 0;
    while (pos < data.byteLength) {
      const n = Math.min(max - this.#fill, data.byteLength - pos);
      this.#buf.set(data.subarray(pos, pos + n), this.#fill);
      this.#fill += n;
      pos += n;
      if (this.#fill === max) yield this.#cut();
    }
  }

  /** Ends the input; yields the remaining chunks (none when no bytes are pending). */
  *finish(): Generator<Uint8Array> {
    while (this.#fill > 0) yield this.#cut();
  }

  #cut(): Uint8Array {
    const cut = findCutPoint(this.#buf, this.#fill, this.#options, this.#masks);
    const chunk = this.#buf.slice(0, cut);
    this.#buf.copyWithin(0, cut, this.#fill);
    this.#fill -= cut;
    return chunk;
  }
}

/**
 * A transform that re-splits a byte stream into content-defined chunks.
 *
 * @example
 * ```ts
 * import { fastCdcStream } from "./fastcdc.ts";
 * const body = ReadableStream.from([new Uint8Array(100_000)]);
 * const chunks = body.pipeThrough(fastCdcStream({ minSize: 4096, normalSize: 16384, maxSize: 65536 }));
 * for await (const chunk of chunks) console.log(chunk.byteLength);
 * ```
 */
export function fastCdcStream(options: FastCdcOptions): TransformStream<Uint8Array, Uint8Array> {
  const cdc = new FastCdc(options);
  return new TransformStream({
    transform(data, controller) {
      for (const chunk of cdc.push(data)) controller.enqueue(chunk);
    },
    flush(controller) {
      for (const chunk of cdc.finish()) controller.enqueue(chunk);
    },
  });
}
