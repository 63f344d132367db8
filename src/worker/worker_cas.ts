/**
 * The worker's view of its CAS (`cas_fast_slow_store`): a `fast_slow` store whose fast side is a
 * `filesystem` store. Inputs are hard-linked from the fast store's files, so every input blob is first
 * made resident there (copied from the slow side, once even when many actions want it at once).
 *
 * Modes: hard links share the inode's mode, so a file can be linked only where its mode is right. The CAS
 * file itself is used for non-executable inputs and kept at 0444 (the worker owns its fast store and
 * makes such files read-only on first use). Executable inputs get a private 0555 copy per digest under
 * `{work_directory}/exec/` (made once, then hard-linked), so chmod on one never changes the other.
 * Across filesystems (EXDEV) files are copied instead.
 *
 * @example
 * ```ts ignore
 * import { WorkerCas } from "./worker_cas.ts";
 * const cas = WorkerCas.from(stores.get("WORKER_CAS"), "/var/cairn/work/exec");
 * await cas.ensureLocal([digest]);
 * await cas.linkInto(digest, false, "/var/cairn/work/actions/1/root/a.txt");
 * ```
 * @module
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { fromBinary } from "@bufbuild/protobuf";
import { type Digest, formatDigest } from "../digest/digest.ts";
import { getBytes } from "../store/helpers.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code } from "../util/error.ts";
import { checkMessageSize, MAX_DECODED_MESSAGE_BYTES } from "../util/limits.ts";

/** A store whose values are files that may be hard-linked (the `filesystem` store). */
export interface LinkableStore extends StoreDriver {
  pathOf(digest: Digest): string;
}

/** Largest protobuf message (Directory, Command, Action) read into memory. */
const MAX_MESSAGE = MAX_DECODED_MESSAGE_BYTES;
/** Blobs copied from slow to fast at once. */
const FETCH_CONCURRENCY = 8;

/** CAS access for one worker. */
export class WorkerCas {
  /** The whole `cas_fast_slow_store` (reads fall through to slow; writes reach both). */
  readonly store: StoreDriver;
  readonly fast: LinkableStore;
  readonly slow: StoreDriver;
  readonly #execDir: string;
  readonly #inflight = new Map<string, Promise<void>>();
  readonly #variants = new Map<string, Promise<string>>();

  constructor(store: StoreDriver, fast: LinkableStore, slow: StoreDriver, execDir: string) {
    this.store = store;
    this.fast = fast;
    this.slow = slow;
    this.#execDir = execDir;
  }

  /**
   * Finds the fast filesystem store and the slow store inside `store` (a `fast_slow` store, possibly
   * behind `ref_store`s). Anything else is INVALID_ARGUMENT naming the requirement.
   */
  static from(store: StoreDriver, execDir: string, name = "cas_fast_slow_store"): WorkerCas {
    const top = unwrap(store);
    const parts = top as unknown as { fast?: StoreDriver; slow?: StoreDriver };
    if (!parts.fast || !parts.slow) {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot start worker: ${name} must be a fast_slow store (its fast side a filesystem store), got ${top.kind}`,
      );
    }
    const fast = unwrap(parts.fast) as Partial<LinkableStore>;
    if (typeof fast.pathOf !== "function") {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot start worker: the fast side of ${name} must be a filesystem store (inputs are hard-linked), got ${
          (fast as StoreDriver).kind
        }`,
      );
    }
    return new WorkerCas(store, fast as LinkableStore, parts.slow, execDir);
  }

  /** Reads and decodes a protobuf message (Action, Command, Directory) from the CAS. */
  async getMessage<D extends DescMessage>(schema: D, digest: Digest, what: string): Promise<MessageShape<D>> {
    let bytes: Uint8Array;
    try {
      checkMessageSize(what, digest, MAX_MESSAGE); // before any byte is read
      bytes = await getBytes(this.store, digest, { maxSize: MAX_MESSAGE });
    } catch (err) {
      const e = CairnError.from(err);
      if (e.code === Code.NotFound) throw missingBlob(digest, what);
      throw new CairnError(e.code, `Cannot read ${what} ${formatDigest(digest)}: ${e.message}`, {
        cause: err,
      });
    }
    try {
      return fromBinary(schema, bytes);
    } catch (err) {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot decode ${what} ${formatDigest(digest)}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  /** Makes every digest resident in the fast store (copying missing ones from the slow store). */
  async ensureLocal(digests: readonly Digest[]): Promise<void> {
    const unique = [...new Map(digests.filter((d) => d.size > 0).map((d) => [formatDigest(d), d])).values()];
    if (unique.length === 0) return;
    const sizes = await this.fast.hasMany(unique);
    const missing = unique.filter((_, i) => sizes[i] === undefined);
    let next = 0;
    const workers = Array.from({ length: Math.min(FETCH_CONCURRENCY, missing.length) }, async () => {
      while (next < missing.length) await this.#fetch(missing[next++]!);
    });
    await Promise.all(workers);
  }

  /**
   * Hard-links (or on another filesystem copies) the blob to `dest` with mode 0444, or 0555 when
   * `executable`. The blob should be resident (see {@linkcode ensureLocal}); if it was evicted meanwhile
   * it is fetched again.
   */
  async linkInto(digest: Digest, executable: boolean, dest: string): Promise<void> {
    if (digest.size === 0) {
      await Deno.writeFile(dest, new Uint8Array(0), { mode: executable ? 0o555 : 0o444 });
      await Deno.chmod(dest, executable ? 0o555 : 0o444);
      return;
    }
    for (let attempt = 0;; attempt++) {
      try {
        const source = executable
          ? await this.#executableVariant(digest)
          : await this.#readOnlySource(digest);
        await linkOrCopy(source, dest, executable ? 0o555 : 0o444);
        return;
      } catch (err) {
        if (attempt === 0 && err instanceof Deno.errors.NotFound) {
          this.#variants.delete(formatDigest(digest));
          await this.#fetch(digest);
          continue;
        }
        throw CairnError.from(err, `Cannot place input ${formatDigest(digest)} at ${dest}`);
      }
    }
  }

  async #readOnlySource(digest: Digest): Promise<string> {
    const path = this.fast.pathOf(digest);
    const info = await Deno.stat(path);
    if (((info.mode ?? 0) & 0o333) !== 0) await Deno.chmod(path, 0o444);
    return path;
  }

  #executableVariant(digest: Digest): Promise<string> {
    const key = formatDigest(digest);
    let p = this.#variants.get(key);
    if (!p) {
      p = (async () => {
        const dest = `${this.#execDir}/${key}`;
        try {
          await Deno.stat(dest);
          return dest;
        } catch {
          // Not made yet.
        }
        await Deno.mkdir(this.#execDir, { recursive: true });
        const tmp = `${dest}.${crypto.randomUUID()}.tmp`;
        await Deno.copyFile(this.fast.pathOf(digest), tmp);
        await Deno.chmod(tmp, 0o555);
        await Deno.rename(tmp, dest);
        return dest;
      })();
      p.catch(() => this.#variants.delete(key));
      this.#variants.set(key, p);
    }
    return p;
  }

  #fetch(digest: Digest): Promise<void> {
    const key = formatDigest(digest);
    let p = this.#inflight.get(key);
    if (!p) {
      p = (async () => {
        let stream: ReadableStream<Uint8Array>;
        try {
          stream = await this.slow.read(digest);
        } catch (err) {
          const e = CairnError.from(err);
          if (e.code === Code.NotFound) throw missingBlob(digest, "input");
          throw e;
        }
        await this.fast.write(digest, stream, { exact: digest.size });
      })().finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, p);
    }
    return p;
  }
}

/** NOT_FOUND → the REAPI's FAILED_PRECONDITION for a missing input blob. */
export function missingBlob(digest: Digest, what: string): CairnError {
  return new CairnError(Code.FailedPrecondition, `Missing ${what} blob ${formatDigest(digest)} in the CAS`, {
    details: [{
      typeName: "google.rpc.PreconditionFailure",
      value: {
        violations: [{ type: "MISSING", subject: `blobs/${digest.hash}/${digest.size}`, description: "" }],
      },
    }],
  });
}

async function linkOrCopy(source: string, dest: string, mode: number): Promise<void> {
  try {
    await Deno.link(source, dest);
  } catch (err) {
    if ((err as { code?: string }).code !== "EXDEV") throw err;
    await Deno.copyFile(source, dest);
    await Deno.chmod(dest, mode);
  }
}

function unwrap(store: StoreDriver): StoreDriver {
  let s = store;
  for (let i = 0; i < 16; i++) {
    const x = s as unknown as { target?: StoreDriver; inner?: StoreDriver; kind: string };
    if (s.kind === "ref_store" && x.target) s = x.target;
    else if (x.inner && !(s as unknown as { fast?: unknown }).fast && !(s as Partial<LinkableStore>).pathOf) {
      s = x.inner;
    } else break;
  }
  return s;
}
