/**
 * Memory bounds on what a client can make the server decode: one message read from a store (Action,
 * Command, Directory, Tree) is at most {@linkcode MAX_DECODED_MESSAGE_BYTES}, refused BEFORE it is read (the
 * digest announces its size); a walk over a directory tree reads at most {@linkcode MAX_TREE_WALK_BYTES} of
 * Directory messages in all, and reads concurrently only up to {@linkcode READ_BUDGET_BYTES} at once.
 *
 * @example
 * ```ts
 * import { checkMessageSize, sliceByBytes } from "./limits.ts";
 * checkMessageSize("Tree", { hash: "ab".repeat(32), size: 1024 }); // RESOURCE_EXHAUSTED past 16 MiB
 * const level = [{ size: 40 }, { size: 30 }, { size: 50 }];
 * for (const slice of sliceByBytes(level, 2, 64)) console.log(slice.length); // 1, 1, 1 (64 bytes a slice)
 * ```
 * @module
 */
import { CairnError, Code } from "./error.ts";

/**
 * Largest protobuf message decoded from a store (16 MiB). gRPC's default message limit is 4 MiB; REAPI
 * messages read from the CAS (Action, Command, Directory, Tree, ActionResult) are far smaller in practice,
 * but a Tree of a big output directory may reach several MiB, hence the headroom. NativeLink caps such
 * reads at 10 MB.
 */
export const MAX_DECODED_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Largest total of Directory messages one tree walk (input tree check, GetTree, materialisation) reads. */
export const MAX_TREE_WALK_BYTES = 128 * 1024 * 1024;

/** Bytes of messages read concurrently by one walk (each slice of reads stays within this). */
export const READ_BUDGET_BYTES = 32 * 1024 * 1024;

/** Anything with a hash and a size (a digest). */
interface Sized {
  readonly hash: string;
  readonly size: number;
}

/**
 * RESOURCE_EXHAUSTED unless a message of `digest.size` bytes may be decoded (at most `limit`, default
 * {@linkcode MAX_DECODED_MESSAGE_BYTES}); checked before any byte is read.
 */
export function checkMessageSize(what: string, digest: Sized, limit = MAX_DECODED_MESSAGE_BYTES): void {
  if (digest.size > limit) {
    throw new CairnError(
      Code.ResourceExhausted,
      `Cannot decode ${what} ${digest.hash}-${digest.size}: ${digest.size} bytes exceeds the limit of ${limit} ` +
        `bytes for one message`,
    );
  }
}

/** Counts the bytes of a tree walk; RESOURCE_EXHAUSTED once they pass {@linkcode MAX_TREE_WALK_BYTES}. */
export class TreeBudget {
  #used = 0;
  readonly #limit: number;
  readonly #what: string;

  constructor(what: string, limit = MAX_TREE_WALK_BYTES) {
    this.#what = what;
    this.#limit = limit;
  }

  /** Charges `bytes` (before they are read); throws when the walk would exceed its limit. */
  charge(bytes: number): void {
    this.#used += bytes;
    if (this.#used > this.#limit) {
      throw new CairnError(
        Code.ResourceExhausted,
        `${this.#what}: the directory tree is more than ${this.#limit} bytes of Directory messages`,
      );
    }
  }
}

/**
 * Splits `items` into consecutive slices of at most `maxCount` items whose sizes add up to at most
 * `maxBytes` (a single larger item gets a slice of its own), so concurrent reads of one slice stay bounded.
 */
export function* sliceByBytes<T extends { readonly size: number }>(
  items: readonly T[],
  maxCount: number,
  maxBytes = READ_BUDGET_BYTES,
): Generator<T[]> {
  let slice: T[] = [];
  let bytes = 0;
  for (const item of items) {
    if (slice.length > 0 && (slice.length >= maxCount || bytes + item.size > maxBytes)) {
      yield slice;
      slice = [];
      bytes = 0;
    }
    slice.push(item);
    bytes += item.size;
  }
  if (slice.length > 0) yield slice;
}

/**
 * Most entries (files, directories and symlinks, counted per path) one input tree may expand to when it is
 * laid out on disk: a Directory may name the same child many times, so a small DAG can describe an
 * exponentially large tree.
 */
export const MAX_TREE_ENTRIES = 1_000_000;
