/**
 * Store throughput benchmark: put/get MB/s of one large blob and small-blob ops/s for each store chain,
 * printed beside this machine's ceilings measured in the same run (SHA-256 on one core via node:crypto,
 * raw file write/read with Deno.open), plus the peak RSS while a 2 GiB blob moves through
 * verify(filesystem).
 *
 * Usage: `deno run -A tests/bench/store_bench.ts [--size-mib=1024] [--rss-mib=2048] [--only=name,name]`
 * (`--size-mib 512` works too; `--only` takes chain names such as `fast_slow(memory, filesystem)`,
 * kinds such as `verify` (every chain of that kind), and `rss`).
 *
 * The source hands out chunks of {@linkcode patternStream}'s bytes from a ring of pre-touched buffers:
 * fresh 1 MiB allocations cost more than the stores themselves on small VMs (page faults), and a
 * source slower than the store would cap every figure. Each buffer is reused 16 chunks later, so every
 * chain's stored bytes are checked by hashing a read-back (outside the timings).
 *
 * To measure another kind, add an entry to {@linkcode CHAINS}: a name and a function returning a store
 * spec (given a fresh scratch directory).
 * @module
 */
import { createHash } from "node:crypto";
import { createStoreRegistry } from "../../src/store/registry.ts";
import type { StoreDriver } from "../../src/store/types.ts";
import { patternStream } from "../../src/util/streams.ts";
import type { Digest } from "../../src/digest/digest.ts";

/** A store chain to measure. */
interface Chain {
  readonly name: string;
  /** The store spec, given a scratch directory. */
  readonly spec: (dir: string) => unknown;
  /** Large-blob size for this chain in MiB (at most --size-mib); memory chains use less. */
  readonly sizeMib?: number;
  /** Compare put against this ceiling. */
  readonly putCeiling: "sha256" | "write" | "none";
}

const fs = (dir: string) => ({ filesystem: { content_path: `${dir}/content`, temp_path: `${dir}/tmp` } });
const verify = (backend: unknown) => ({ verify: { backend, verify_size: true, verify_hash: true } });

/** The chains measured; add part B's kinds here. */
const CHAINS: Chain[] = [
  { name: "memory", spec: () => ({ memory: {} }), sizeMib: 256, putCeiling: "none" },
  { name: "verify(memory)", spec: () => verify({ memory: {} }), sizeMib: 256, putCeiling: "sha256" },
  { name: "filesystem", spec: fs, putCeiling: "write" },
  { name: "verify(filesystem)", spec: (d) => verify(fs(d)), putCeiling: "sha256" },
  {
    name: "compression(lz4, filesystem)",
    spec: (d) => ({ compression: { compression_algorithm: { lz4: {} }, backend: fs(d) } }),
    putCeiling: "write",
  },
  {
    name: "fast_slow(memory, filesystem)",
    spec: (d) => ({ fast_slow: { fast: { memory: {} }, slow: fs(d) } }),
    sizeMib: 256,
    putCeiling: "write",
  },
  {
    name: "dedup(memory, filesystem)",
    spec: (d) => ({ dedup: { index_store: { memory: {} }, content_store: fs(d) } }),
    sizeMib: 256,
    putCeiling: "write",
  },
];

const KNOWN_ARGS = ["size-mib", "rss-mib", "only"];
const args = parseArgs(Deno.args);
const SIZE_MIB = positive("size-mib", 1024);
const RSS_MIB = positive("rss-mib", 2048);
/** Chain names (commas inside parentheses belong to the name), kinds (`verify` → both verify chains), `rss`. */
const ONLY = args.only ? new Set(args.only.split(/,(?![^()]*\))/).map((n) => n.trim())) : undefined;
const selected = (name: string) => !ONLY || ONLY.has(name) || ONLY.has(name.split("(")[0]!);

/** `--k=v` or `--k v`; unknown flags and stray words are errors. */
function parseArgs(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) {
      throw new Error(`Unexpected argument "${a}"; flags are --${KNOWN_ARGS.join(", --")}`);
    }
    const eq = a.indexOf("=");
    const k = eq < 0 ? a.slice(2) : a.slice(2, eq);
    if (!KNOWN_ARGS.includes(k)) {
      throw new Error(`Unknown flag --${k}; flags are --${KNOWN_ARGS.join(", --")}`);
    }
    const v = eq >= 0 ? a.slice(eq + 1) : argv[i + 1];
    if (v === undefined || (eq < 0 && v.startsWith("--"))) throw new Error(`--${k} needs a value`);
    if (eq < 0) i++;
    out[k] = v;
  }
  return out;
}

function positive(name: string, fallback: number): number {
  const v = args[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    throw new Error(`--${name} must be a positive number of MiB, got "${v}"`);
  }
  return n;
}
const MiB = 1 << 20;
const CHUNK = MiB;

const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);
const fmt = (n: number) => n.toFixed(0).padStart(6);

/** Buffers in the source's ring (each chunk's buffer is handed out again this many chunks later). */
const RING = 16;

/**
 * The bytes of `patternStream(size, seed, CHUNK)` from a ring of reused, already-touched buffers
 * (see the module doc). Chunk `i` differs from the template only in its first 64 bytes.
 */
function sourceStream(size: number, seed: number): ReadableStream<Uint8Array> {
  return patternStream(size, seed, CHUNK, RING);
}

async function digestOfPattern(size: number, seed: number): Promise<Digest> {
  const h = createHash("sha256");
  for await (const c of sourceStream(size, seed)) h.update(c);
  return { hash: h.digest("hex"), size };
}

/** Hashes what the store returns for `digest` and fails unless it is the digest's content. */
async function checkStored(store: StoreDriver, digest: Digest): Promise<void> {
  const h = createHash("sha256");
  let n = 0;
  for await (const c of await store.read(digest)) {
    h.update(c);
    n += c.byteLength;
  }
  const hash = h.digest("hex");
  if (n !== digest.size || hash !== digest.hash) {
    throw new Error(`stored bytes differ: read ${n} bytes hashing to ${hash}, expected ${digest.hash}`);
  }
}

/** Drains with a BYOB reader reusing one buffer when the stream supports it (byte streams); -1 if not. */
async function drainByob(stream: ReadableStream<Uint8Array>): Promise<number> {
  let reader: ReadableStreamBYOBReader;
  try {
    reader = stream.getReader({ mode: "byob" });
  } catch {
    await stream.cancel();
    return -1;
  }
  let buf = new Uint8Array(CHUNK);
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read(buf);
    if (done || !value) break;
    n += value.byteLength;
    buf = new Uint8Array(value.buffer);
  }
  return n;
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const c of stream) n += c.byteLength;
  return n;
}

// --- ceilings ---

async function ceilings(dir: string, size: number) {
  const a = await ceilingsOnce(dir, size);
  const b = await ceilingsOnce(dir, size);
  await Deno.remove(`${dir}/raw.bin`);
  return {
    source: Math.max(a.source, b.source),
    sha: Math.max(a.sha, b.sha),
    write: Math.max(a.write, b.write),
    read: Math.max(a.read, b.read),
    freshRead: Math.max(a.freshRead, b.freshRead),
  };
}

async function ceilingsOnce(dir: string, size: number) {
  // Source generation alone (the bench's own producer cost).
  const sourceToDrain = sourceStream(size, 99);
  let t = performance.now();
  await drain(sourceToDrain);
  const source = mbps(size, performance.now() - t);

  // SHA-256 on one core over the same bytes.
  const block = new Uint8Array(CHUNK);
  crypto.getRandomValues(block.subarray(0, 65536));
  const h = createHash("sha256");
  t = performance.now();
  for (let done = 0; done < size; done += CHUNK) h.update(block);
  h.digest();
  const sha = mbps(size, performance.now() - t);

  // Raw file write and read with Deno.open, 1 MiB at a time. Written like a store writes: a new file
  // renamed over the previous copy (kept from the previous run), so the page cache needs new pages —
  // truncating and rewriting one file would recycle the pages just freed, which on a VM that hands
  // freed memory back to its host is several times faster than what any store can do.
  const path = `${dir}/raw.bin`;
  t = performance.now();
  {
    using f = await Deno.open(`${path}.tmp`, { write: true, createNew: true });
    for (let done = 0; done < size; done += CHUNK) {
      let p = 0;
      while (p < CHUNK) p += await f.write(block.subarray(p));
    }
  }
  await Deno.rename(`${path}.tmp`, path);
  const write = mbps(size, performance.now() - t);
  t = performance.now();
  {
    using f = await Deno.open(path);
    const buf = new Uint8Array(CHUNK);
    while ((await f.read(buf)) !== null) { /* read */ }
  }
  const read = mbps(size, performance.now() - t);
  // The same, but a fresh buffer per read (what any stream handing out owned chunks must pay).
  t = performance.now();
  {
    using f = await Deno.open(path);
    while ((await f.read(new Uint8Array(CHUNK))) !== null) { /* read */ }
  }
  const freshRead = mbps(size, performance.now() - t);
  return { source, sha, write, read, freshRead };
}

// --- per chain ---

async function measureChain(chain: Chain, base: string, ceil: Awaited<ReturnType<typeof ceilings>>) {
  const dir = await Deno.makeTempDir({ dir: base, prefix: "chain-" });
  const registry = createStoreRegistry();
  let store: StoreDriver | undefined;
  try {
    store = registry.build(chain.name, chain.spec(dir));
    await store.init?.({
      get: (n: string) => {
        throw new Error(`no store ${n}`);
      },
    });
    const size = Math.min(chain.sizeMib ?? SIZE_MIB, SIZE_MIB) * MiB;
    const digest = await digestOfPattern(size, 5);

    // Best of two runs of each (the machine is shared).
    let put = 0;
    let get = 0;
    let byob = 0;
    let t = 0;
    for (let run = 0; run < 2; run++) {
      const source = sourceStream(size, 5);
      t = performance.now();
      await store.write(digest, source, { exact: size });
      put = Math.max(put, mbps(size, performance.now() - t));
      if (run === 0) await checkStored(store, digest);
      t = performance.now();
      const got = await drain(await store.read(digest));
      get = Math.max(get, mbps(size, performance.now() - t));
      if (got !== size) throw new Error(`read ${got} bytes, expected ${size}`);
      t = performance.now();
      const gotByob = await drainByob(await store.read(digest));
      byob = gotByob < 0 ? -1 : Math.max(byob, mbps(size, performance.now() - t));
    }

    // Small blobs: 4,000 × 1 KiB, 32 at a time.
    const small = Array.from({ length: 4000 }, (_, i) => {
      const b = new Uint8Array(1024);
      new DataView(b.buffer).setUint32(0, i);
      b.fill(i & 0xff, 4);
      return { b, d: { hash: createHash("sha256").update(b).digest("hex"), size: 1024 } };
    });
    const inBatches = async (fn: (x: (typeof small)[number]) => Promise<unknown>) => {
      const start = performance.now();
      for (let i = 0; i < small.length; i += 32) await Promise.all(small.slice(i, i + 32).map(fn));
      return small.length / ((performance.now() - start) / 1000);
    };
    const smallPut = await inBatches((x) => store!.write(x.d, new Blob([x.b]).stream(), { exact: 1024 }));
    const smallGet = await inBatches(async (x) => await drain(await store!.read(x.d)));
    t = performance.now();
    for (let i = 0; i < small.length; i += 1000) {
      await store.hasMany(small.slice(i, i + 1000).map((x) => x.d));
    }
    const hasPerS = small.length / ((performance.now() - t) / 1000);

    const putRef = chain.putCeiling === "sha256"
      ? ceil.sha
      : chain.putCeiling === "write"
      ? ceil.write
      : undefined;
    const isFs = chain.name.includes("filesystem");
    console.log(
      `${chain.name.padEnd(32)} ${String(size / MiB).padStart(5)} MiB  put ${fmt(put)} MB/s${
        putRef ? ` (${((put / putRef) * 100).toFixed(0)}% of ${chain.putCeiling})` : ""
      }  get ${fmt(get)} MB/s${
        isFs ? ` (${((get / ceil.freshRead) * 100).toFixed(0)}% of raw fresh-buffer read)` : ""
      }${
        byob > 0
          ? `  BYOB get ${fmt(byob)} MB/s${
            isFs ? ` (${((byob / ceil.read) * 100).toFixed(0)}% of raw read)` : ""
          }`
          : ""
      }  small put ${fmt(smallPut)}/s get ${fmt(smallGet)}/s has ${fmt(hasPerS)}/s`,
    );
  } catch (err) {
    console.log(`${chain.name.padEnd(32)} FAILED: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await store?.close?.();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function peakRss(base: string) {
  const dir = await Deno.makeTempDir({ dir: base, prefix: "rss-" });
  const store = createStoreRegistry().build("rss", verify(fs(dir)));
  const size = RSS_MIB * MiB;
  let peak = Deno.memoryUsage().rss;
  const start = peak;
  const timer = setInterval(() => (peak = Math.max(peak, Deno.memoryUsage().rss)), 20);
  try {
    const digest = await digestOfPattern(size, 77);
    const source = sourceStream(size, 77);
    const t0 = performance.now();
    await store.write(digest, source, { exact: size });
    const t1 = performance.now();
    const n = await drain(await store.read(digest));
    const t2 = performance.now();
    if (n !== size) throw new Error("short read");
    console.log(
      `peak RSS moving ${RSS_MIB} MiB through verify(filesystem) (put ${fmt(mbps(size, t1 - t0))} MB/s, get ${
        fmt(mbps(size, t2 - t1))
      } MB/s): ${(peak / MiB).toFixed(0)} MiB (start ${(start / MiB).toFixed(0)} MiB; target < 200 MiB)`,
    );
  } finally {
    clearInterval(timer);
    await store.close?.();
    await Deno.remove(dir, { recursive: true });
  }
}

for (const name of ONLY ?? []) {
  if (name !== "rss" && !CHAINS.some((c) => c.name === name || c.name.split("(")[0] === name)) {
    throw new Error(`Unknown --only name "${name}"; names are rss, ${CHAINS.map((c) => c.name).join(", ")}`);
  }
}

const base = await Deno.makeTempDir({ prefix: "cairn-store-bench-" });
try {
  // First, while the heap is still small.
  if (!ONLY || ONLY.has("rss")) await peakRss(base);
  const ceil = await ceilings(base, SIZE_MIB * MiB);
  console.log(
    `ceilings (${SIZE_MIB} MiB): sha256 1 core ${fmt(ceil.sha)} MB/s | raw write ${
      fmt(ceil.write)
    } MB/s | raw read ${fmt(ceil.read)} MB/s | fresh-buffer read ${fmt(ceil.freshRead)} MB/s | bench source ${
      fmt(ceil.source)
    } MB/s`,
  );
  for (const chain of CHAINS) {
    if (!selected(chain.name)) continue;
    await measureChain(chain, base, ceil);
  }
} finally {
  await Deno.remove(base, { recursive: true });
}
