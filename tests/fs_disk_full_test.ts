/**
 * A filesystem store on a real, tiny tmpfs: a write that runs out of space fails with RESOURCE_EXHAUSTED,
 * leaves no temp file, and the store keeps serving what it had. Mounting needs root (as in CI).
 */
import assert from "node:assert/strict";
import { createFilesystemStore } from "../src/store/filesystem_store.ts";
import { getBytes, has, putBytes } from "../src/store/helpers.ts";
import { digestOf } from "../src/digest/digest.ts";
import { assertRejectsWithCode } from "../src/store/conformance_suite.ts";
import { Code } from "../src/util/error.ts";
import { bytesStream } from "../src/util/streams.ts";

async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

Deno.test("FilesystemStore reports a full disk as RESOURCE_EXHAUSTED and stays consistent", async () => {
  const mnt = await Deno.makeTempDir({ prefix: "cairn_full_" });
  await run("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt]);
  try {
    const store = createFilesystemStore({ contentPath: `${mnt}/content`, tempPath: `${mnt}/tmp` });
    await store.init();
    try {
      const small = randomBytes(256 * 1024);
      const smallDigest = digestOf(small);
      await putBytes(store, smallDigest, small);

      // 3 MiB is written on the main thread, 5 MiB (offloaded, as uploads are) by the store's I/O thread:
      // both fail the same way.
      for (const size of [3 << 20, 5 << 20]) {
        const big = randomBytes(size);
        const bigDigest = digestOf(big);
        const err = await assertRejectsWithCode(
          store.write(bigDigest, bytesStream(big, 64 * 1024), { exact: big.byteLength }, { offload: true }),
          Code.ResourceExhausted,
        );
        assert.match(err.message, /disk full|no space/i);

        assert.equal(await has(store, bigDigest), undefined, "the failed blob must not be visible");
        assert.deepEqual([...Deno.readDirSync(`${mnt}/tmp`)], [], "the temp file must be removed");
      }
      assert.deepEqual(
        await getBytes(store, smallDigest, { maxSize: 1 << 20 }),
        small,
        "earlier blobs still served",
      );

      // Space is back once the partial is gone: another small write succeeds.
      const again = randomBytes(128 * 1024);
      await putBytes(store, digestOf(again), again);
      assert.equal(await has(store, digestOf(again)), again.byteLength);
    } finally {
      await store.close?.();
    }
  } finally {
    await run("umount", [mnt]);
    await Deno.remove(mnt, { recursive: true });
  }
});
