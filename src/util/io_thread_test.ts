import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Code } from "./error.ts";
import { IoThread, threadHashingStream } from "./io_thread.ts";
import { bytesStream, collectBytes, patternBytes } from "./streams.ts";

Deno.test("IoThread writes files in order, with their mtime, from chunks of any size", async () => {
  const dir = await Deno.makeTempDir();
  const thread = new IoThread({ bufferSize: 64 * 1024, depth: 2 });
  try {
    const data = await patternBytes(1_000_003, 3);
    const sink = await thread.open(`${dir}/a`, 0o640);
    for (let pos = 0, step = 1; pos < data.byteLength; pos += step, step = step * 3 % 200_000 + 1) {
      await sink.push(data.subarray(pos, pos + step));
    }
    const when = new Date(1_700_000_000_000);
    await sink.finish(when);
    assert.ok(Buffer.compare(await Deno.readFile(`${dir}/a`), data) === 0);
    const info = await Deno.stat(`${dir}/a`);
    assert.equal(info.mtime?.getTime(), when.getTime());
    assert.equal(info.mode! & 0o777, 0o640);

    // An existing path cannot be opened for writing; abort closes without writing what is buffered.
    await assert.rejects(
      thread.open(`${dir}/a`, 0o640),
      (err: { code?: unknown; message?: string }) =>
        err.code === Code.Internal && /exists/i.test(err.message ?? ""),
    );
    const b = await thread.open(`${dir}/b`, 0o600);
    await b.push(new Uint8Array(10));
    await b.abort();
    assert.equal((await Deno.stat(`${dir}/b`)).size, 0);
  } finally {
    thread.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IoThread hashes like node:crypto, and a hashing stream fails its end on a mismatch", async () => {
  const thread = new IoThread({ bufferSize: 100_000 });
  try {
    const data = await patternBytes(2_345_678, 9);
    const expected = createHash("sha256").update(data).digest("hex");
    const hasher = await thread.hasher();
    await hasher.push(data.subarray(0, 7));
    await hasher.push(data.subarray(7));
    assert.equal(await hasher.digest(), expected);

    let seen: [string, number] | undefined;
    const out = await collectBytes(
      bytesStream(data).pipeThrough(threadHashingStream(thread, (h, n) => void (seen = [h, n]))),
      1 << 24,
    );
    assert.ok(Buffer.compare(out, data) === 0, "bytes pass through unchanged");
    assert.deepEqual(seen, [expected, data.byteLength]);

    const refused = bytesStream(data).pipeThrough(threadHashingStream(thread, () => {
      throw new Error("mismatch");
    }));
    await assert.rejects(collectBytes(refused, 1 << 24), /mismatch/);
  } finally {
    thread.close();
  }
});

Deno.test("Closing an IoThread fails what is in flight with UNAVAILABLE, and it restarts on next use", async () => {
  const dir = await Deno.makeTempDir();
  const thread = new IoThread({ bufferSize: 1024, depth: 1 });
  try {
    const sink = await thread.open(`${dir}/x`, 0o600);
    thread.close();
    await assert.rejects(
      (async () => {
        for (let i = 0; i < 10; i++) await sink.push(new Uint8Array(1024));
      })(),
      (err: { code?: unknown }) => err.code === Code.Unavailable,
    );
    const again = await thread.open(`${dir}/y`, 0o600);
    await again.push(new Uint8Array(5000).fill(1));
    await again.finish(new Date());
    assert.equal((await Deno.stat(`${dir}/y`)).size, 5000);
  } finally {
    thread.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("An IoThread runs at a lower priority (nice 10) than the event loop (Linux)", async () => {
  const niceOf = (tid: string) => {
    try {
      const stat = Deno.readTextFileSync(`/proc/self/task/${tid}/stat`);
      // The fields after the command name (which may hold spaces): state is field 3, nice field 19.
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
    } catch {
      return NaN; // the thread ended meanwhile
    }
  };
  const nices = () => [...Deno.readDirSync("/proc/self/task")].map((t) => niceOf(t.name));
  const mainNice = niceOf(String(Deno.pid));
  const thread = new IoThread({ bufferSize: 64 * 1024, depth: 2 });
  try {
    const hasher = await thread.hasher();
    await hasher.push(new Uint8Array(1000));
    assert.equal(await hasher.digest(), createHash("sha256").update(new Uint8Array(1000)).digest("hex"));
    // (A thread of an IoThread closed earlier in this process may be reused for this one.)
    assert.ok(nices().includes(10), `a thread at nice 10 among ${nices()}`);
    assert.equal(niceOf(String(Deno.pid)), mainNice, "the main thread keeps its priority");
  } finally {
    await thread.close();
  }
});
