/**
 * The worker's view of its CAS (`cas_fast_slow_store`): a `fast_slow` store. Every input blob is first made
 * resident in the fast side (copied from the slow side, once even when many actions want it at once), then
 * placed in the action's input root.
 *
 * Stores stay opaque: the worker reaches the `fast_slow` store and, behind its fast side, a `filesystem`
 * store only through {@linkcode StoreDriver.innerStore}, which only pass-through kinds (`ref_store`,
 * `verify`) implement. When it reaches one, inputs are placed by {@linkcode FilesystemStore.linkInto}, which
 * never changes the store's files: non-executable inputs (0444, the store's own mode) are hard links of the
 * stored file; executable inputs get a private 0555 copy per digest under `{work_directory}/exec/` (made
 * once, then hard-linked). When the fast side changes bytes (`compression`, `dedup`), inputs are read
 * through it into a private copy per digest and mode under the same folder, then hard-linked. Across
 * filesystems (EXDEV) files are copied instead.
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
import { FastSlowStore } from "../store/fast_slow_store.ts";
import { CONTENT_MODE, FilesystemStore } from "../store/filesystem_store.ts";
import { getBytes } from "../store/helpers.ts";
import type { StoreDriver } from "../store/types.ts";
import { mapLimit } from "../util/async.ts";
import { CairnError, Code } from "../util/error.ts";
import { checkMessageSize, MAX_DECODED_MESSAGE_BYTES } from "../util/limits.ts";

/** Largest protobuf message (Directory, Command, Action) read into memory. */
const MAX_MESSAGE = MAX_DECODED_MESSAGE_BYTES;
/** Blobs copied from slow to fast at once. */
const FETCH_CONCURRENCY = 8;

/** CAS access for one worker. */
export class WorkerCas {
  /** The whole `cas_fast_slow_store` (reads fall through to slow; writes reach both). */
  readonly store: StoreDriver;
  /** The fast side as configured: blobs are made resident through it (so a `verify` still checks them). */
  readonly fast: StoreDriver;
  readonly slow: StoreDriver;
  /** The filesystem store behind `fast` (through pass-through stores only), whose files may be linked. */
  readonly #files: FilesystemStore | undefined;
  readonly #execDir: string;
  readonly #inflight = new Map<string, Promise<void>>();
  readonly #variants = new Map<string, Promise<string>>();

  constructor(store: StoreDriver, fast: StoreDriver, slow: StoreDriver, execDir: string) {
    this.store = store;
    this.fast = fast;
    this.slow = slow;
    const files = passThrough(fast);
    this.#files = files instanceof FilesystemStore ? files : undefined;
    this.#execDir = execDir;
  }

  /**
   * Finds the `fast_slow` store inside `store` (possibly behind pass-through stores such as `ref_store`).
   * Anything else is INVALID_ARGUMENT naming the requirement.
   */
  static from(store: StoreDriver, execDir: string, name = "cas_fast_slow_store"): WorkerCas {
    const top = passThrough(store);
    if (!(top instanceof FastSlowStore)) {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot start worker: ${name} must be a fast_slow store (inputs are made resident in its fast side), got ${top.kind}`,
      );
    }
    return new WorkerCas(store, top.fast, top.slow, execDir);
  }

  /** Whether inputs are hard links of the fast store's files (false: read through the fast store). */
  get linksFiles(): boolean {
    return this.#files !== undefined;
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
    await mapLimit(missing, FETCH_CONCURRENCY, (d) => this.#fetch(d));
  }

  /**
   * Places the blob at `dest` with mode 0444, or 0555 when `executable`: a hard link (or on another
   * filesystem a copy) of the fast store's file or of a private copy (see the module doc). The blob should
   * be resident (see {@linkcode ensureLocal}); if it was evicted meanwhile it is fetched again.
   */
  async linkInto(digest: Digest, executable: boolean, dest: string): Promise<void> {
    const mode = executable ? 0o555 : 0o444;
    if (digest.size === 0) {
      await Deno.writeFile(dest, new Uint8Array(0), { mode });
      await Deno.chmod(dest, mode);
      return;
    }
    for (let attempt = 0;; attempt++) {
      try {
        if (this.#files && mode === CONTENT_MODE) await this.#files.linkInto(digest, dest, mode);
        else await linkOrCopy(await this.#variant(digest, mode), dest, mode);
        return;
      } catch (err) {
        if (attempt === 0 && isNotFound(err)) {
          this.#variants.delete(variantKey(digest, mode));
          await this.#fetch(digest);
          continue;
        }
        throw CairnError.from(err, `Cannot place input ${formatDigest(digest)} at ${dest}`);
      }
    }
  }

  /** A private copy of the blob with `mode` under the exec folder, made once per digest and mode. */
  #variant(digest: Digest, mode: number): Promise<string> {
    const key = variantKey(digest, mode);
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
        try {
          if (this.#files) {
            await this.#files.linkInto(digest, tmp, mode);
          } else {
            const stream = await this.fast.read(digest);
            await Deno.writeFile(tmp, stream, { mode, createNew: true });
            const size = (await Deno.stat(tmp)).size;
            if (size !== digest.size) {
              throw new CairnError(
                Code.DataLoss,
                `Input ${formatDigest(digest)} read back as ${size} bytes from the ${this.fast.kind} store`,
              );
            }
          }
          await Deno.chmod(tmp, mode);
          await Deno.rename(tmp, dest);
        } catch (err) {
          await Deno.remove(tmp).catch(() => {});
          throw err;
        }
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

/** Steps through pass-through stores (those offering {@linkcode StoreDriver.innerStore}). */
function passThrough(store: StoreDriver): StoreDriver {
  let s = store;
  for (let i = 0; i < 16 && s.innerStore; i++) s = s.innerStore();
  return s;
}

/** The file name of a private copy: the digest for the executable one (as before), else `<digest>-<mode>`. */
function variantKey(digest: Digest, mode: number): string {
  return mode === 0o555 ? formatDigest(digest) : `${formatDigest(digest)}-${mode.toString(8)}`;
}

function isNotFound(err: unknown): boolean {
  return err instanceof Deno.errors.NotFound || (err instanceof CairnError && err.code === Code.NotFound);
}
