/**
 * Crash safety of the filesystem store: a child process writing many large blobs is SIGKILLed at
 * several points; after each kill the store reopens with every completed blob intact, nothing else
 * present unless it is intact, and an empty temp directory.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { formatDigest, parseDigest } from "../src/digest/digest.ts";
import { createFilesystemStore } from "../src/store/filesystem_store.ts";

const fixture = new URL("./fixtures/fs_writer.ts", import.meta.url).pathname;

/** Runs the writer until `completions` blobs are done (plus a little), then SIGKILLs it. */
async function runAndKill(
  contentPath: string,
  tempPath: string,
  seed: number,
  completions: number,
  extraMs: number,
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fixture, contentPath, tempPath, String(seed)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const done: string[] = [];
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let killed = false;
  try {
    while (done.length < completions) {
      const { value, done: end } = await lines.read();
      if (end) break;
      buffer += value;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      for (const line of parts) if (line.startsWith("DONE ")) done.push(line.slice(5));
    }
    // Let it get into the middle of the next writes, then kill without warning.
    await new Promise((r) => setTimeout(r, extraMs));
    child.kill("SIGKILL");
    killed = true;
    // Completions printed before the kill still count.
    for (;;) {
      const { value, done: end } = await lines.read();
      if (end) break;
      buffer += value;
    }
    for (const line of buffer.split("\n")) if (line.startsWith("DONE ")) done.push(line.slice(5));
  } finally {
    if (!killed) child.kill("SIGKILL");
    await lines.cancel().catch(() => {});
    await child.status;
  }
  return done;
}

async function hashFile(path: string): Promise<string> {
  const h = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) h.update(chunk);
  return h.digest("hex");
}

Deno.test("filesystem store survives SIGKILL mid-write at several points", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cairn-crash-" });
  const contentPath = `${dir}/content`;
  const tempPath = `${dir}/tmp`;
  const completed = new Set<string>();
  try {
    for (const [seed, completions, extraMs] of [[1, 2, 40], [2, 5, 150], [3, 9, 90]] as const) {
      const done = await runAndKill(contentPath, tempPath, seed, completions, extraMs);
      assert.ok(done.length >= completions, `writer completed only ${done.length} blobs`);
      for (const d of done) completed.add(d);
      const leftovers = [...Deno.readDirSync(tempPath)].length;
      const store = createFilesystemStore({ contentPath, tempPath });
      try {
        await store.init();
        assert.deepEqual([...Deno.readDirSync(tempPath)], [], "temp_path is emptied at start");
        // Every completed blob is present and byte-correct.
        for (const text of completed) {
          const digest = parseDigest(text);
          assert.equal((await store.hasMany([digest]))[0], digest.size, `completed blob ${text} is missing`);
          assert.equal(
            await hashFile(store.pathOf(digest)),
            digest.hash,
            `completed blob ${text} is corrupt`,
          );
        }
        // Anything else present is intact too.
        let others = 0;
        for await (const key of store.list()) {
          assert.equal(typeof key, "object");
          const digest = key as { hash: string; size: number };
          if (completed.has(formatDigest(digest))) continue;
          others++;
          assert.equal(await hashFile(store.pathOf(digest)), digest.hash, "an unreported blob is not intact");
        }
        console.log(
          `kill after ${done.length} reported: ${completed.size} completed so far, ${others} finished-unreported, ${leftovers} temp files cleaned`,
        );
      } finally {
        await store.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
