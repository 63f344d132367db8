/**
 * `filesystem` store: one file per value under `content_path`, written crash-safely through
 * `temp_path` (a unique temp file renamed into place only after its full size has arrived), evicted
 * least-recently-used by NativeLink's `eviction_policy`.
 *
 * Layout: digests at `content_path/d/<first two hex>/<hash>-<size>`; action-cache keys at
 * `content_path/s/=<base64url of "<hash>-<size>">` (the name earlier versions gave the AC's `hash-size` string
 * keys, so existing AC entries stay readable); string keys at `content_path/s/=<base64url of the key>`, or
 * `s/+<base64url>` when the string itself reads `<hash>-<size>` (so it never collides with an AC entry), and
 * `s/~<sha256 of the key>` when too long for a file name.
 * Bytes stored under a digest with a `{max}` size (transformed content such as a compression store's
 * output) go to `<hash>-<size>@<stored size>`, so every file name states its expected size.
 * At start `temp_path` is emptied and the index (sizes, access order from file mtimes) is rebuilt from
 * disk; files whose size disagrees with their name are deleted. Reads touch the file's mtime so access
 * order survives restarts. Content files are read-only (0444) and never change mode: a worker places them as
 * inputs through {@linkcode FilesystemStore.linkInto}, a hard link when the mode it wants is the file's and
 * a copy otherwise, so nothing outside the store ever modifies a stored file.
 *
 * The store checks sizes itself; hashes are checked by a `verify` wrapper. Files are not fsynced: the
 * rename-after-complete protocol is safe against process crashes, and a file cut short by a power loss
 * is caught by the size check at start.
 *
 * @example
 * ```ts
 * import { createFilesystemStore } from "./filesystem_store.ts";
 * const cas = createFilesystemStore({ contentPath: "/var/cairn/cas", tempPath: "/var/cairn/tmp" });
 * await cas.init(); // optional: the first operation starts it too
 * ```
 * @module
 */
import { createProgress } from "../util/progress.ts";
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { type Digest, formatDigest } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";
import { type EvictionPolicy, LruIndex, NO_EVICTION } from "../util/lru.ts";
import { cancelled, collectBytes, forEachChunk } from "../util/streams.ts";
import {
  acKey,
  beginUpload,
  emptyStream,
  evictionPolicyFrom,
  isAcKey,
  isDigestKey,
  keyToString,
  notFoundError,
  resolveRange,
  tooLargeError,
} from "./helpers.ts";
import { mapLimit, Semaphore } from "../util/async.ts";
import { IoThread } from "../util/io_thread.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, StoreUsage, UploadSize, WriteOptions } from "./types.ts";

/** Settings of {@linkcode FilesystemStore} (NativeLink's fields in camelCase). */
export interface FilesystemStoreOptions {
  readonly contentPath: string;
  readonly tempPath: string;
  readonly evictionPolicy?: EvictionPolicy;
  /** Bytes per read chunk (default 1 MiB). */
  readonly readBufferSize?: number;
  /** Sizes are rounded up to this for eviction accounting (default 4096). */
  readonly blockSize?: number;
  /** At most this many writes at once (0 = unlimited). */
  readonly maxConcurrentWrites?: number;
  /**
   * Writes marked `offload` (network uploads) of at least this many bytes are written by a worker thread
   * ({@linkcode IoThread}) so the main thread keeps receiving and hashing meanwhile; others inline.
   * Default 4 MiB.
   */
  readonly threadWriteMinBytes?: number;
  /** Send every write of a known size through the worker thread, `offload` or not (tests). */
  readonly threadWritesAlways?: boolean;
  /**
   * The process's shared I/O thread (the app's), which the store uses but does not stop. Without it the store
   * starts its own on first use and stops it on {@linkcode FilesystemStore.close}.
   */
  readonly ioThread?: IoThread;
  /** Millisecond clock (tests). */
  readonly now?: () => number;
}

/**
 * What the index holds per stored value, kept small (a CAS of a million small blobs has a million): a digest's
 * key and the usual file path follow from the index id ({@linkcode keyOf}, {@linkcode fileOf}), so they are
 * only stored when they do not (527 bytes of heap per digest entry before, 247 after).
 */
interface Entry {
  /** The key of a named (non-digest) value, when known (a string key stored under a hashed name is not). */
  readonly key: StoreKey | undefined;
  /** Milliseconds (store clock) when the file's mtime was last set: a write, or a touch by `readBytes`. */
  touched: number;
  /** Stored bytes. */
  readonly size: number;
  /** Path of the file relative to `content_path`, when it is not the one its id implies. */
  readonly file: string | undefined;
}

/** The entry of the value with index `id`, stored as `rel`. */
function makeEntry(id: string, key: StoreKey | undefined, rel: string, size: number, touched: number): Entry {
  return {
    key: key !== undefined && isDigestKey(key) ? undefined : key,
    touched,
    size,
    file: rel === fileOfId(id) ? undefined : rel,
  };
}

/** The file of a value as its id implies it: `d/ab/<hash>-<size>` for digest id `d/<hash>-<size>`, else the id. */
function fileOfId(id: string): string {
  return id.startsWith("d/") ? `d/${id.slice(2, 4)}/${id.slice(2)}` : id;
}

/** Path of `entry`'s file relative to `content_path`. */
function fileOf(id: string, entry: Entry): string {
  return entry.file ?? fileOfId(id);
}

/** The key of the value with index `id`, when known. */
function keyOf(id: string, entry: Entry): StoreKey | undefined {
  if (entry.key !== undefined || !id.startsWith("d/")) return entry.key;
  const dash = id.lastIndexOf("-");
  return { hash: id.slice(2, dash), size: Number(id.slice(dash + 1)) };
}

const DEFAULT_READ_CHUNK = 1 << 20;
const WRITE_BUFFER = 1 << 20;
/** First size of a write buffer (grown to {@linkcode WRITE_BUFFER} as data comes). */
const INITIAL_WRITE_BUFFER = 4 << 10;
const EMPTY = new Uint8Array(0);
/** Default of {@linkcode FilesystemStoreOptions.threadWriteMinBytes}. */
const THREAD_WRITE_MIN = 4 << 20;
/**
 * {@linkcode FilesystemStore.readBytes} of at most this many bytes read synchronously (measured on a loaded
 * 2-core machine: 1-64 KiB from the page cache in 10-30 µs, against 35-400 µs through async file ops).
 */
export const SYNC_READ_MAX = 64 << 10;
/** `readBytes` sets a file's mtime at most this often (ms): the access order on disk is only for restarts. */
const TOUCH_INTERVAL_MS = 1000;
const MAX_NAME_BYTES = 200;
const DIGEST_NAME = /^([0-9a-f]{64})-(\d+)(?:@(\d+))?$/;
/** The text of an action-cache key's file name (base64url-encoded under `s/=`). */
const AC_NAME = /^([0-9a-f]{64})-(\d+)$/;
/** Most action cache ids remembered by `FilesystemStore.#id` (the memo starts over when full). */
const AC_ID_CACHE_SIZE = 4096;
const SHARDS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const encoder = new TextEncoder();

/** Permission bits of every content file (read-only; see {@linkcode FilesystemStore.linkInto}). */
export const CONTENT_MODE = 0o444;

/** A store of files on a local filesystem. */
export class FilesystemStore implements StoreDriver {
  readonly kind = "filesystem";
  readonly contentPath: string;
  readonly tempPath: string;
  readonly #readChunk: number;
  readonly #blockSize: number;
  readonly #now: () => number;
  readonly #index: LruIndex<Entry>;
  readonly #locks = new Map<string, Promise<void>>();
  readonly #pending = new Set<Promise<void>>();
  /** At most `max_concurrent_writes` writes at once (0: no limit). */
  readonly #writes: Semaphore;
  readonly #threadWriteMin: number;
  readonly #threadAlways: boolean;
  #started: Promise<void> | undefined;
  #thread: IoThread | undefined;
  /** Whether `#thread` is the store's own (started and stopped here) rather than the injected one. */
  readonly #ownsThread: boolean;
  #tempSeq = 0;
  #tempPrefix = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

  constructor(options: FilesystemStoreOptions) {
    this.contentPath = options.contentPath.replace(/\/+$/, "") || "/";
    this.tempPath = options.tempPath.replace(/\/+$/, "") || "/";
    this.#readChunk = options.readBufferSize || DEFAULT_READ_CHUNK;
    this.#blockSize = options.blockSize || 4096;
    this.#writes = new Semaphore(options.maxConcurrentWrites ?? 0);
    this.#threadWriteMin = options.threadWriteMinBytes ?? THREAD_WRITE_MIN;
    this.#threadAlways = options.threadWritesAlways ?? false;
    this.#thread = options.ioThread;
    this.#ownsThread = options.ioThread === undefined;
    this.#now = options.now ?? Date.now;
    this.#index = new LruIndex<Entry>(options.evictionPolicy ?? NO_EVICTION, {
      now: this.#now,
      onEvict: (id, entry) => this.#track(this.#unlinkIfUnindexed(id, fileOf(id, entry))),
    });
  }

  usage(): StoreUsage {
    return { bytes: this.#index.bytes, count: this.#index.size, maxBytes: this.#index.policy.maxBytes };
  }

  /** Number of indexed values. */
  get count(): number {
    return this.#index.size;
  }

  /** Sum of indexed sizes, rounded up to `block_size` each (what eviction counts). */
  get bytes(): number {
    return this.#index.bytes;
  }

  /**
   * Where a digest's file lives (whether or not it is present now). Workers hard-link inputs from here;
   * a link may fail with ENOENT when the blob was evicted meanwhile.
   */
  pathOf(digest: Digest): string {
    return `${this.contentPath}/${digestFile(digest)}`;
  }

  /**
   * Places the blob of `digest` at `dest` (which must not exist) with permission bits `mode`, never changing
   * the store's own file: a hard link when the stored file has exactly `mode` (content files are 0444, so
   * read-only inputs cost nothing), otherwise, or across filesystems, a copy then set to `mode`.
   * NOT_FOUND when the blob is absent (or was evicted meanwhile).
   */
  async linkInto(digest: Digest, dest: string, mode: number): Promise<void> {
    await this.#ready();
    const id = this.#id(digest);
    const entry = this.#index.get(id);
    if (!entry) throw notFoundError(this.kind, digest);
    const path = `${this.contentPath}/${fileOf(id, entry)}`;
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw notFoundError(this.kind, digest);
      throw err;
    }
    if (((info.mode ?? 0) & 0o7777) === mode) {
      try {
        await Deno.link(path, dest);
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== "EXDEV") throw err;
      }
    }
    await Deno.copyFile(path, dest);
    await Deno.chmod(dest, mode);
  }

  /**
   * Checks the directories and empties `temp_path`, then rebuilds the index from disk in the background:
   * the server can listen (and show the rebuild's progress on its status page) while a large store is
   * indexed; every operation awaits the index. Resolves once the directories are usable.
   */
  async init(): Promise<void> {
    const ready = this.#ready();
    await this.#prepared;
    ready.catch(() => {}); // an index failure reaches every operation that awaits it
  }

  hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    const ready = this.#ready();
    // A key found counts as used: REAPI asks FindMissingBlobs and GetActionResult to extend the lives of the
    // blobs they reference (the order on disk, mtime, follows reads only).
    return ready.then(() => keys.map((k) => this.#index.get(this.#id(k))?.size));
  }

  async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    await this.#ready();
    const signal = options?.signal;
    if (signal?.aborted) throw cancelled(signal, `Read of ${keyToString(key)}`);
    const id = this.#id(key);
    const entry = this.#index.get(id);
    if (!entry) throw notFoundError(this.kind, key);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(`${this.contentPath}/${fileOf(id, entry)}`, { read: true });
    } catch (err) {
      throw this.#openFailed(err, key, id, entry);
    }
    try {
      const stat = await file.stat();
      if (isDigestKey(key) && stat.size !== entry.size) {
        file.close();
        await this.#dropCorrupt(id, entry);
        throw corruptError(key, stat.size);
      }
      const { start, end } = resolveRange(key, stat.size, options);
      const now = new Date(this.#now());
      await file.utime(now, now).catch(() => {});
      if (start === end) {
        file.close();
        return emptyStream();
      }
      if (start > 0) await file.seek(start, Deno.SeekMode.Start);
      return fileStream(file, end - start, this.#readChunk, keyToString(key), signal);
    } catch (err) {
      try {
        file.close();
      } catch { /* already closed */ }
      throw CairnError.from(err, `Cannot read ${keyToString(key)} from filesystem store`);
    }
  }

  /**
   * A value (or range) at once, without a stream. Absent keys are answered from the in-memory index without
   * touching the disk. Values of at most {@linkcode SYNC_READ_MAX} bytes are read synchronously: open, one
   * read into a buffer of the indexed size (+1, to see the end), close — a few microseconds from the page
   * cache, where async file ops cost a thread hop each. Larger ones are collected from {@linkcode read}.
   * Only renamed (complete) files are indexed, so a half-written temp file is never read.
   */
  async readBytes(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array> {
    if (!this.#isReady) await this.#ready();
    const signal = options.signal;
    if (signal?.aborted) throw cancelled(signal, `Read of ${keyToString(key)}`);
    const id = this.#id(key);
    const entry = this.#index.get(id);
    if (!entry) throw notFoundError(this.kind, key);
    // Refuse before any I/O: the indexed size is the file's (a rewrite of an AC entry is re-checked below).
    const planned = resolveRange(key, entry.size, options);
    if (planned.end - planned.start > options.maxSize) {
      throw tooLargeError(key, planned.end - planned.start, options.maxSize);
    }
    if (entry.size <= SYNC_READ_MAX) {
      const whole = this.#readSmallSync(key, id, entry);
      if (whole !== undefined) return whole.subarray(planned.start, planned.end);
    }
    // A large value, or a file whose size is not the indexed one (an AC entry being replaced, a damaged blob):
    // read() checks the file's size and resolves the range against it.
    const stream = await this.read(key, options);
    return await collectBytes(stream, options.maxSize, keyToString(key));
  }

  async write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    const budget = await beginUpload(key, data, size, async () => {
      await this.#ready();
      if (options?.signal?.aborted) throw cancelled(options.signal, `Write of ${keyToString(key)}`);
    });
    const { exact, limit } = budget;
    const name = keyToString(key);
    const id = this.#id(key);
    // No write slot, temp file or buffer before the first bytes: a stalled upload holds no file open.
    data = await afterFirstChunk(data, options?.signal);
    const releaseWrite = await this.#writes.acquire();
    const tmp = `${this.tempPath}/${this.#tempPrefix}-${(this.#tempSeq++).toString(36)}`;
    let sink: FileOut | undefined;
    try {
      sink = exact !== undefined &&
          (this.#threadAlways || (options?.offload === true && exact >= this.#threadWriteMin))
        ? await this.#writeThread().open(tmp, CONTENT_MODE)
        : await MainThreadFile.open(tmp, Math.min(WRITE_BUFFER, Math.max(limit, 1)));
      const out = sink;
      await forEachChunk(data, (chunk) => {
        budget.add(chunk.byteLength);
        return out.push(chunk);
      }, options?.signal);
      budget.finish();
      const count = budget.count;
      await out.finish(new Date(this.#now()));
      sink = undefined;
      const rel = !isDigestKey(key)
        ? id
        : count === key.size && exact !== undefined
        ? digestFile(key)
        : `${digestFile(key)}@${count}`;
      const entry = makeEntry(id, key, rel, count, this.#now());
      await this.#serial(id, async () => {
        const dest = `${this.contentPath}/${rel}`;
        try {
          await Deno.rename(tmp, dest);
        } catch (err) {
          if (!(err instanceof Deno.errors.NotFound)) throw err;
          await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
          await Deno.rename(tmp, dest);
        }
        const old = this.#index.peek(id);
        this.#index.set(id, entry, this.#accounted(count));
        if (old && fileOf(id, old) !== rel) {
          await Deno.remove(`${this.contentPath}/${fileOf(id, old)}`).catch(() => {});
        }
      });
    } catch (err) {
      // Unlink first (an open file can be unlinked): the temp file is gone even if the abort is slow.
      await Deno.remove(tmp).catch(() => {});
      await sink?.abort().catch(() => {});
      const e = CairnError.from(err, `Cannot write ${name} to filesystem store`);
      throw e;
    } finally {
      releaseWrite();
    }
  }

  async delete(key: StoreKey): Promise<boolean> {
    await this.#ready();
    const id = this.#id(key);
    return await this.#serial(id, async () => {
      const entry = this.#index.delete(id);
      if (!entry) return false;
      try {
        await Deno.remove(`${this.contentPath}/${fileOf(id, entry)}`);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) {
          throw CairnError.from(err, `Cannot delete ${keyToString(key)}`);
        }
      }
      return true;
    });
  }

  async *list(): AsyncIterable<StoreKey> {
    await this.#ready();
    for (const e of [...this.#index.entries()]) {
      const key = keyOf(e.key, e.value);
      if (key !== undefined) yield key;
    }
  }

  /** Waits for pending evictions and stops its own write thread; the files stay for the next start. */
  async close(): Promise<void> {
    if (this.#started) await this.#started.catch(() => {});
    while (this.#pending.size) await Promise.all([...this.#pending]);
    if (!this.#ownsThread) return;
    this.#thread?.close();
    this.#thread = undefined;
  }

  /** The thread that writes large files (the injected one, else the store's own, started on first use). */
  #writeThread(): IoThread {
    return this.#thread ??= new IoThread({ bufferSize: WRITE_BUFFER });
  }

  // --- internals ---

  #ready(): Promise<void> {
    if (this.#started === undefined) {
      this.#started = this.#start();
      this.#started.then(() => this.#isReady = true, () => {});
    }
    return this.#started;
  }

  /** Whether {@linkcode #ready} has settled successfully (small reads then skip awaiting it). */
  #isReady = false;

  /** Settles once the directories are checked and `temp_path` is empty (before the index is rebuilt). */
  #prepared: Promise<void> | undefined;

  #start(): Promise<void> {
    let prepared!: () => void;
    let failed!: (err: unknown) => void;
    this.#prepared = new Promise<void>((resolve, reject) => {
      prepared = resolve;
      failed = reject;
    });
    const run = this.#startSteps(() => prepared());
    run.catch((err) => failed(err));
    return run;
  }

  async #startSteps(prepared: () => void): Promise<void> {
    if (this.contentPath === this.tempPath) {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot open filesystem store: content_path and temp_path are the same`,
      );
    }
    try {
      await Deno.mkdir(this.tempPath, { recursive: true });
      await Deno.mkdir(`${this.contentPath}/s`, { recursive: true });
      await mapLimit(SHARDS, 16, (s) => Deno.mkdir(`${this.contentPath}/d/${s}`, { recursive: true }));
      // Empty temp_path: anything there is an unfinished write.
      const stale: string[] = [];
      for await (const e of Deno.readDir(this.tempPath)) stale.push(e.name);
      await mapLimit(
        stale,
        16,
        (n) => Deno.remove(`${this.tempPath}/${n}`, { recursive: true }).catch(() => {}),
      );
      prepared();
      await this.#rebuildIndex();
    } catch (err) {
      throw CairnError.from(err, `Cannot open filesystem store at ${this.contentPath}`);
    }
  }

  async #rebuildIndex(): Promise<void> {
    // Synchronous reads on purpose: this runs once at start, before the store serves anything, and a million
    // readdir/lstat calls run several times faster without a promise each (it yields between directories).
    const found: { id: string; rel: string; key: StoreKey | undefined; size: number; mtime: number }[] = [];
    const doomed: string[] = [];
    const dirs = [...SHARDS.map((s) => `d/${s}`), "s"];
    // Digests spread evenly over the shard directories: the share of them scanned estimates the total.
    const progress = createProgress(`Indexing filesystem store ${this.contentPath}`, { everyMs: 2000 });
    for (const [n, dir] of dirs.entries()) {
      if (n > 0) progress.update(found.length, Math.round(found.length * dirs.length / n));
      // Let the server answer (status page, health) between shard directories of a large store.
      if (found.length > 10_000) await new Promise((r) => setTimeout(r, 0));
      for (const e of Deno.readDirSync(`${this.contentPath}/${dir}`)) {
        const name = e.name;
        const rel = `${dir}/${name}`;
        const path = `${this.contentPath}/${rel}`;
        let key: StoreKey | undefined;
        let id = rel;
        let expected: number | undefined;
        if (dir === "s") key = decodeNamedKey(name);
        else {
          const m = DIGEST_NAME.exec(name);
          if (!m || m[1]!.slice(0, 2) !== dir.slice(2)) {
            doomed.push(path);
            continue;
          }
          key = { hash: m[1]!, size: Number(m[2]) };
          expected = Number(m[3] ?? m[2]);
          id = digestId(key);
        }
        let stat: Deno.FileInfo;
        try {
          stat = Deno.lstatSync(path);
        } catch {
          continue;
        }
        if (!stat.isFile || (expected !== undefined && stat.size !== expected)) {
          doomed.push(path);
          continue;
        }
        found.push({ id, rel, key, size: stat.size, mtime: stat.mtime?.getTime() ?? 0 });
      }
    }
    progress.update(found.length, found.length);
    progress.finish();
    await mapLimit(doomed, 16, (path) => Deno.remove(path, { recursive: true }).catch(() => {}));
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) {
      // The same digest stored twice (exact and transformed): keep the newer file.
      const older = this.#index.delete(f.id);
      if (older) await Deno.remove(`${this.contentPath}/${fileOf(f.id, older)}`).catch(() => {});
      this.#index.set(
        f.id,
        makeEntry(f.id, f.key, f.rel, f.size, f.mtime),
        this.#accounted(f.size),
        f.mtime,
      );
    }
    this.#index.evict();
  }

  /** The index id of a key: the file path for AC and string keys, `d/<hash>-<size>` for digests. */
  #id(key: StoreKey): string {
    if (isDigestKey(key)) return digestId(key);
    const ac = isAcKey(key);
    const text = ac ? formatDigest(key.ac) : key as string;
    if (!ac) return this.#makeId(text, false);
    // Action cache lookups repeat: their ids are remembered (the encoding costs more than the lookup).
    let id = this.#acIds.get(text);
    if (id === undefined) {
      id = this.#makeId(text, true);
      if (this.#acIds.size >= AC_ID_CACHE_SIZE) this.#acIds.clear();
      this.#acIds.set(text, id);
    }
    return id;
  }

  /** Ids of action cache keys lately looked up, by digest text. */
  readonly #acIds = new Map<string, string>();

  #makeId(text: string, ac: boolean): string {
    const encoded = Buffer.from(encoder.encode(text)).toString("base64url");
    // A string that reads like an AC entry's name gets its own prefix.
    const prefix = ac || !AC_NAME.test(text) ? "=" : "+";
    if (encoded.length + 1 <= MAX_NAME_BYTES) return `s/${prefix}${encoded}`;
    return `s/~${createHash("sha256").update(ac ? `\u0000ac:${text}` : text).digest("hex")}`;
  }

  #accounted(size: number): number {
    return Math.ceil(size / this.#blockSize) * this.#blockSize;
  }

  /** Runs `fn` after every earlier operation on the same file (commit, delete, eviction). */
  #serial<T>(rel: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(rel) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.then(() => {}, () => {});
    this.#locks.set(rel, tail);
    void tail.then(() => {
      if (this.#locks.get(rel) === tail) this.#locks.delete(rel);
    });
    return run;
  }

  #track(p: Promise<void>): void {
    const tracked = p.catch(() => {}).finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }

  /** Eviction: removes the file unless a newer write re-indexed the same file meanwhile. */
  #unlinkIfUnindexed(id: string, file: string): Promise<void> {
    return this.#serial(id, async () => {
      const now = this.#index.peek(id);
      if (now !== undefined && fileOf(id, now) === file) return;
      await Deno.remove(`${this.contentPath}/${file}`).catch(() => {});
    });
  }

  /**
   * The whole file of a small value with one read into a buffer one byte longer than the indexed size: a
   * short read of a regular file ends at its end, so exactly `entry.size` bytes read is the whole, unchanged
   * file. `undefined` when the file has another size (the caller takes the checking path). The mtime is set at
   * most once per {@linkcode TOUCH_INTERVAL_MS} per file (the access order a restart sees).
   */
  #readSmallSync(key: StoreKey, id: string, entry: Entry): Uint8Array | undefined {
    const path = `${this.contentPath}/${fileOf(id, entry)}`;
    if (this.#now() - entry.touched < TOUCH_INTERVAL_MS) {
      // No touch due: the whole file in one call (one op instead of open, read and close).
      let bytes: Uint8Array;
      try {
        bytes = Deno.readFileSync(path);
      } catch (err) {
        throw this.#openFailed(err, key, id, entry);
      }
      return bytes.byteLength === entry.size ? bytes : undefined;
    }
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true });
    } catch (err) {
      throw this.#openFailed(err, key, id, entry);
    }
    try {
      const buf = new Uint8Array(entry.size + 1);
      const n = file.readSync(buf) ?? 0;
      if (n !== entry.size) return undefined;
      const now = this.#now();
      if (now - entry.touched >= TOUCH_INTERVAL_MS) {
        entry.touched = now;
        const date = new Date(now);
        try {
          file.utimeSync(date, date);
        } catch { /* access order on disk is best effort */ }
      }
      return buf.subarray(0, n);
    } catch (err) {
      throw CairnError.from(err, `Cannot read ${keyToString(key)} from filesystem store`);
    } finally {
      file.close();
    }
  }

  /** The error of a failed open; a file gone between the lookup and the open (evicted, removed) is unindexed. */
  #openFailed(err: unknown, key: StoreKey, id: string, entry: Entry): CairnError {
    if (err instanceof Deno.errors.NotFound) {
      if (this.#index.peek(id) === entry) this.#index.delete(id);
      return notFoundError(this.kind, key);
    }
    return CairnError.from(err, `Cannot read ${keyToString(key)} from filesystem store`);
  }

  async #dropCorrupt(id: string, entry: Entry): Promise<void> {
    await this.#serial(id, async () => {
      if (this.#index.peek(id) !== entry) return;
      this.#index.delete(id);
      await Deno.remove(`${this.contentPath}/${fileOf(id, entry)}`).catch(() => {});
    });
  }
}

/** NOT_FOUND for a digest whose file has another size than the digest's (it has been removed). */
function corruptError(key: StoreKey, size: number): CairnError {
  return new CairnError(
    Code.NotFound,
    `Cannot read ${keyToString(key)}: its file in filesystem store has ${size} bytes, so it was removed`,
  );
}

function digestFile(d: Digest): string {
  return `d/${d.hash.slice(0, 2)}/${formatDigest(d)}`;
}

function digestId(d: Digest): string {
  return `d/${formatDigest(d)}`;
}

/**
 * Coalesces small chunks into buffers of `size` bytes and keeps one file write in flight while the
 * next chunk is produced (so hashing upstream overlaps disk writes). Two buffers alternate.
 */
class PipelinedWriter {
  readonly #file: Deno.FsFile;
  /** Allocated on first use and grown up to `#size` as data comes (a stalled upload holds what it sent). */
  readonly #buffers: [Uint8Array, Uint8Array] = [EMPTY, EMPTY];
  readonly #size: number;
  #current: 0 | 1 = 0;
  #used = 0;
  #inflight: Promise<void> = Promise.resolve();

  constructor(file: Deno.FsFile, size: number) {
    this.#file = file;
    this.#size = size;
  }

  /** The current buffer, with room for `more` bytes past what it holds when it may still grow. */
  #buffer(more: number): Uint8Array {
    const buf = this.#buffers[this.#current];
    if (this.#used + more <= buf.byteLength || buf.byteLength >= this.#size) return buf;
    const grown = new Uint8Array(
      Math.min(this.#size, Math.max(buf.byteLength * 2, this.#used + more, INITIAL_WRITE_BUFFER)),
    );
    grown.set(buf.subarray(0, this.#used));
    this.#buffers[this.#current] = grown;
    return grown;
  }

  /**
   * Resolves once the chunk is buffered or its write started (at most one write in flight). A chunk at
   * least a buffer long with nothing buffered before it is written as is, without a copy.
   */
  async push(chunk: Uint8Array): Promise<void> {
    if (this.#used === 0 && chunk.byteLength >= this.#size) return await this.#start(chunk);
    const buf = this.#buffer(chunk.byteLength);
    if (this.#used + chunk.byteLength <= buf.byteLength) {
      buf.set(chunk, this.#used);
      this.#used += chunk.byteLength;
      if (this.#used === this.#size) await this.#flush();
      return;
    }
    await this.#flush();
    if (chunk.byteLength >= this.#size) await this.#start(chunk);
    else {
      this.#buffer(chunk.byteLength).set(chunk);
      this.#used = chunk.byteLength;
    }
  }

  /** Writes what is buffered and waits for every write. */
  async finish(): Promise<void> {
    await this.#flush();
    await this.#inflight;
  }

  /** Waits for the write in flight, ignoring its outcome (error paths). */
  async settle(): Promise<void> {
    await this.#inflight.catch(() => {});
  }

  async #flush(): Promise<void> {
    if (this.#used === 0) return;
    const bytes = this.#buffers[this.#current].subarray(0, this.#used);
    this.#current = this.#current === 0 ? 1 : 0;
    this.#used = 0;
    await this.#start(bytes);
  }

  async #start(bytes: Uint8Array): Promise<void> {
    await this.#inflight;
    const p = writeAll(this.#file, bytes);
    p.catch(() => {}); // observed later by finish/settle or the next write
    this.#inflight = p;
  }
}

/** Where a write's bytes go: a `FileSink` on the I/O thread, or a file written inline. */
interface FileOut {
  push(chunk: Uint8Array): Promise<void>;
  /** Sets the file's times to `mtime` and closes it; throws any write error. */
  finish(mtime: Date): Promise<void>;
  /** Closes the file after a failure (the caller removes it). */
  abort(): Promise<void>;
}

/**
 * Waits for `data`'s first chunk (or its end) and returns a stream of all of `data`'s chunks. Cancels
 * `data` and throws CANCELLED when `signal` aborts meanwhile.
 */
async function afterFirstChunk(
  data: ReadableStream<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<ReadableStream<Uint8Array>> {
  const reader = data.getReader();
  const onAbort = () => void reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  let first: ReadableStreamReadResult<Uint8Array>;
  try {
    if (signal?.aborted) throw cancelled(signal);
    first = await reader.read();
    if (signal?.aborted) throw cancelled(signal);
  } catch (err) {
    await reader.cancel(err).catch(() => {});
    reader.releaseLock();
    throw err instanceof CairnError ? err : CairnError.from(err);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  let pending: ReadableStreamReadResult<Uint8Array> | undefined = first;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const r = pending ?? await reader.read();
      pending = undefined;
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

/** A file written on the main thread (small values: a thread hop would cost more than the write). */
class MainThreadFile implements FileOut {
  readonly #file: Deno.FsFile;
  readonly #writer: PipelinedWriter;
  #closed = false;

  private constructor(file: Deno.FsFile, bufferSize: number) {
    this.#file = file;
    this.#writer = new PipelinedWriter(file, bufferSize);
  }

  static async open(path: string, bufferSize: number): Promise<MainThreadFile> {
    return new MainThreadFile(
      await Deno.open(path, { write: true, createNew: true, mode: CONTENT_MODE }),
      bufferSize,
    );
  }

  push(chunk: Uint8Array): Promise<void> {
    return this.#writer.push(chunk);
  }

  async finish(mtime: Date): Promise<void> {
    await this.#writer.finish();
    await this.#file.utime(mtime, mtime);
    this.#closed = true;
    this.#file.close();
  }

  async abort(): Promise<void> {
    await this.#writer.settle();
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#file.close();
    } catch { /* closed */ }
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let pos = 0;
  while (pos < bytes.byteLength) pos += await file.write(bytes.subarray(pos));
}

/** Streams `length` bytes from the file's current position; closes the file at the end or on cancel. */
function fileStream(
  file: Deno.FsFile,
  length: number,
  chunkSize: number,
  what: string,
  signal?: AbortSignal,
): ReadableStream<Uint8Array> {
  let left = length;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    signal?.removeEventListener("abort", onAbort);
    try {
      file.close();
    } catch { /* already closed */ }
  };
  let controllerRef: ReadableByteStreamController | undefined;
  const onAbort = () => {
    if (closed) return;
    close();
    try {
      controllerRef?.error(cancelled(signal!, `Read of ${what}`));
    } catch { /* stream already done */ }
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  // A byte stream: BYOB readers get the file read straight into their buffer; default readers get
  // freshly allocated chunks of `chunkSize`.
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: chunkSize,
    start(controller) {
      controllerRef = controller;
    },
    async pull(controller) {
      if (closed) return;
      const request = controller.byobRequest;
      const view = request?.view;
      if (!request || !view) return;
      try {
        const target = new Uint8Array(view.buffer, view.byteOffset, Math.min(view.byteLength, left));
        const n = await file.read(target);
        if (closed) return;
        if (n === null) {
          throw new CairnError(Code.DataLoss, `Cannot read ${what}: file ended ${left} bytes early`);
        }
        left -= n;
        request.respond(n);
      } catch (err) {
        if (closed) return;
        close();
        controller.error(CairnError.from(err, `Cannot read ${what}`));
        return;
      }
      if (left <= 0) {
        close();
        controller.close();
        controller.byobRequest?.respond(0);
      }
    },
    cancel() {
      close();
    },
  });
}

/** The key of a file under `s/`: an AC key for `=<hash>-<size>`, a string key otherwise (unknown if hashed). */
function decodeNamedKey(name: string): StoreKey | undefined {
  if (!name.startsWith("=") && !name.startsWith("+")) return undefined;
  const text = new TextDecoder().decode(Buffer.from(name.slice(1), "base64url"));
  if (name.startsWith("+")) return text;
  const m = AC_NAME.exec(text);
  return m ? acKey({ hash: m[1]!, size: Number(m[2]) }) : text;
}

/** Creates a {@linkcode FilesystemStore}. */
export function createFilesystemStore(options: FilesystemStoreOptions): FilesystemStore {
  return new FilesystemStore(options);
}

/**
 * Registry factory for `{ filesystem: { content_path, temp_path, eviction_policy, read_buffer_size,
 * block_size, max_concurrent_writes, evict_page_cache } }`.
 */
export const filesystemStoreFactory: StoreFactory<"filesystem"> = (fields, ctx) => {
  const contentPath = ctx.string(fields, "content_path");
  const tempPath = ctx.string(fields, "temp_path");
  if (contentPath === "") throw ctx.error("content_path is empty");
  if (tempPath === "") throw ctx.error("temp_path is empty");
  if (contentPath.replace(/\/+$/, "") === tempPath.replace(/\/+$/, "")) {
    throw ctx.error("content_path and temp_path must be different directories");
  }
  ctx.boolean(fields, "evict_page_cache", false);
  return new FilesystemStore({
    contentPath,
    tempPath,
    evictionPolicy: evictionPolicyFrom(fields, ctx),
    readBufferSize: ctx.number(fields, "read_buffer_size", 0),
    blockSize: ctx.number(fields, "block_size", 0),
    maxConcurrentWrites: ctx.number(fields, "max_concurrent_writes", 0),
    ...(ctx.options.now ? { now: ctx.options.now } : {}),
    ...(ctx.options.ioThread ? { ioThread: ctx.options.ioThread } : {}),
  });
};
