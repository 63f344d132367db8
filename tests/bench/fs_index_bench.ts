/**
 * How long a filesystem store takes to start over a large existing content directory: the index (sizes and
 * access order) is rebuilt from disk at every start. Creates N blob files (default 1,000,000, one byte each,
 * in the store's sharded layout) and times `init()`, beside the ceiling of listing and stat-ing the same files
 * directly in the same run.
 *
 * Usage: `deno run -A tests/bench/fs_index_bench.ts [--files=1000000]`
 * @module
 */
import { createFilesystemStore } from "../../src/store/filesystem_store.ts";

const arg = Deno.args.find((a) => a.startsWith("--files="));
const N = Number(arg?.slice("--files=".length) ?? 1_000_000);
if (!Number.isSafeInteger(N) || N <= 0) throw new Error(`--files must be a positive integer, got ${arg}`);

const base = await Deno.makeTempDir({ prefix: "cairn_fs_index_bench_" });
const content = `${base}/content`;
try {
  // Populate: the layout is d/<first two hex>/<hash>-<size>.
  const t0 = performance.now();
  const one = new Uint8Array([0x61]);
  const made = new Set<string>();
  for (let i = 0; i < N; i++) {
    const hash = (i.toString(16).padStart(8, "0") + "c".repeat(56)).slice(0, 64);
    const hex = hash.slice(0, 2);
    const dir = `${content}/d/${hex}`;
    if (!made.has(hex)) {
      Deno.mkdirSync(dir, { recursive: true });
      made.add(hex);
    }
    Deno.writeFileSync(`${dir}/${hash}-1`, one);
  }
  console.log(`created ${N.toLocaleString()} files in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  // Ceiling: list every shard and stat every file, synchronously, nothing else.
  const c0 = performance.now();
  let seen = 0;
  for (const shard of Deno.readDirSync(`${content}/d`)) {
    const dir = `${content}/d/${shard.name}`;
    for (const e of Deno.readDirSync(dir)) {
      Deno.lstatSync(`${dir}/${e.name}`);
      seen++;
    }
  }
  const ceilingS = (performance.now() - c0) / 1000;
  console.log(`ceiling: readdir + lstat of ${seen.toLocaleString()} files: ${ceilingS.toFixed(2)} s`);

  const s0 = performance.now();
  const store = createFilesystemStore({ contentPath: content, tempPath: `${base}/tmp` });
  await store.init();
  const startS = (performance.now() - s0) / 1000;
  const probe = (0).toString(16).padStart(8, "0") + "c".repeat(56);
  const [size] = await store.hasMany([{ hash: probe, size: 1 }]);
  if (size !== 1) throw new Error("the rebuilt index lacks a blob that is on disk");
  await store.close();
  const rss = Deno.memoryUsage().rss / 2 ** 20;
  console.log(
    `filesystem store start over ${N.toLocaleString()} blobs: ${startS.toFixed(2)} s ` +
      `(${(startS / ceilingS).toFixed(1)}x the readdir+lstat ceiling); RSS after ${rss.toFixed(0)} MiB`,
  );
} finally {
  await Deno.remove(base, { recursive: true });
}
