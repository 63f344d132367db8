/**
 * Tests of `malloc_trim.ts` in child processes of their own (a garbage collection on demand, RSS not shared
 * with parallel test files): freed native memory that glibc kept is returned by a trim, and without
 * `--allow-ffi` the trimmer is simply absent.
 *
 * @example
 * ```sh
 * deno test --allow-all src/util/malloc_trim_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";

const MODULE = new URL("./malloc_trim.ts", import.meta.url).href;

async function run(flags: string[], code: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "cairn-malloc-trim-" });
  const script = `${dir}/child.ts`;
  await Deno.writeTextFile(script, code);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, script],
    stdout: "piped",
    stderr: "piped",
  }).output().finally(() => Deno.remove(dir, { recursive: true }));
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `child failed: ${new TextDecoder().decode(out.stderr)}`);
  return text.trim();
}

Deno.test({
  name: "malloc_trim: memory freed by the program but kept by glibc goes back to the system",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    // 160 MiB of 64 KiB ArrayBuffers (below glibc's mmap threshold: they live in its heap), written so that
    // their pages are resident; all but the last are dropped and collected. The last one pins the top of
    // the heap, so glibc's own top trimming cannot give the rest back: only malloc_trim can.
    const code = `
      import { startMallocTrim } from "${MODULE}";
      const rss = () => Deno.memoryUsage().rss;
      let bufs = [];
      for (let i = 0; i < 2560; i++) bufs.push(new Uint8Array(64 * 1024).fill(1));
      const pin = bufs.at(-1);
      bufs = [];
      globalThis.gc(); globalThis.gc();
      const before = rss();
      const t = startMallocTrim(3_600_000);
      if (!t) { console.log("absent"); Deno.exit(0); }
      await t.trimNow();
      const after = rss();
      t.stop();
      console.log(JSON.stringify({ before, after, pinned: pin.length }));
    `;
    const text = await run(["--allow-ffi", "--allow-read", "--v8-flags=--expose-gc"], code);
    assert.ok(text !== "absent", "glibc's malloc_trim is available on this Linux");
    const { before, after } = JSON.parse(text);
    const released = (before - after) / 1048576;
    assert.ok(
      released > 100,
      `a trim released ${released.toFixed(1)} MiB of ~160 MiB freed (RSS ${before} → ${after})`,
    );
  },
});

Deno.test("malloc_trim: without --allow-ffi there is no trimmer and nothing fails", async () => {
  const code = `
    import { startMallocTrim } from "${MODULE}";
    console.log(startMallocTrim(1000) === undefined ? "absent" : "present");
  `;
  assert.equal(await run(["--allow-read"], code), "absent");
});
