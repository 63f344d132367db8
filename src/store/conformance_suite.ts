/**
 * The one shared behaviour suite every store kind runs: round trips, range edges, empty blob, missing
 * keys, size mismatches, concurrency, cancellation and abort, string keys, `hasMany` batches.
 * Call it from a `*_test.ts` file; it registers `Deno.test` cases named `<name>: <behaviour>`.
 *
 * @example
 * ```ts ignore
 * // src/store/memory_store_test.ts
 * import { runStoreConformance } from "./conformance_suite.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * runStoreConformance("memory", () => Promise.resolve({ store: createMemoryStore(), cleanup: async () => {} }));
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type Digest, digestOf, EMPTY_DIGEST } from "../digest/digest.ts";
import { CairnError, Code, codeName } from "../util/error.ts";
import { bytesStream, collectBytes, patternBytes } from "../util/streams.ts";
import { getBytes, has, putBytes } from "./helpers.ts";
import type { StoreDriver, StoreKey } from "./types.ts";

/** A fresh store for one test, and how to dispose of it. */
export interface StoreUnderTest {
  readonly store: StoreDriver;
  readonly cleanup: () => Promise<void>;
}

/** What the store under test is expected to do. */
export interface ConformanceOptions {
  /** The store keeps what is written (false for `noop`: writes succeed, every key stays absent). Default true. */
  readonly retains?: boolean;
  /** String keys are supported. Default true. */
  readonly stringKeys?: boolean;
  /** Uploads whose bytes do not hash to their digest are refused (`verify` with `verify_hash`). Default false. */
  readonly verifiesHash?: boolean;
  /** Size of the "large" blob used for multi-chunk tests. Default 3 MiB + 17 bytes. */
  readonly largeSize?: number;
}

const MAX = 64 << 20;

/** Asserts that `promise` rejects with a {@linkcode CairnError} of `code`; returns the error. */
export async function assertRejectsWithCode(promise: Promise<unknown>, code: Code): Promise<CairnError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected ${codeName(code)}, but it succeeded`);
  assert.ok(caught instanceof CairnError, `expected a CairnError ${codeName(code)}, got ${String(caught)}`);
  assert.equal(
    codeName(caught.code),
    codeName(code),
    `expected ${codeName(code)}, got ${codeName(caught.code)}: ${caught.message}`,
  );
  return caught;
}

/** A stream yielding `bytes` in chunks of `chunkSize`, then failing with `error` if given. */
function streamOf(bytes: Uint8Array, chunkSize = 64 * 1024, error?: Error): ReadableStream<Uint8Array> {
  let pos = 0;
  return new ReadableStream({
    pull(c) {
      if (pos >= bytes.byteLength) {
        if (error) c.error(error);
        else c.close();
        return;
      }
      c.enqueue(bytes.slice(pos, pos + chunkSize));
      pos += chunkSize;
    },
  });
}

/** Registers the conformance tests for a store kind. */
export function runStoreConformance(
  name: string,
  makeStore: () => Promise<StoreUnderTest>,
  options: ConformanceOptions = {},
): void {
  const retains = options.retains ?? true;
  const stringKeys = options.stringKeys ?? true;
  const largeSize = options.largeSize ?? (3 << 20) + 17;

  const test = (behaviour: string, fn: (store: StoreDriver) => Promise<void>) =>
    Deno.test(`${name}: ${behaviour}`, async () => {
      const { store, cleanup } = await makeStore();
      try {
        await fn(store);
      } finally {
        await cleanup();
      }
    });

  /** Expect the stored value of `key` to be `bytes` (or absent for non-retaining stores). */
  const expectStored = async (store: StoreDriver, key: StoreKey, bytes: Uint8Array) => {
    if (!retains) {
      assert.equal(await has(store, key), undefined);
      await assertRejectsWithCode(store.read(key), Code.NotFound);
      return;
    }
    assert.equal(await has(store, key), bytes.byteLength);
    const got = await getBytes(store, key, { maxSize: MAX });
    assert.equal(got.byteLength, bytes.byteLength);
    assert.ok(Buffer.compare(got, bytes) === 0, "stored bytes differ from written bytes");
  };

  test(
    retains ? "round trip of small and multi-chunk blobs" : "writes are accepted and dropped",
    async (store) => {
      const small = new TextEncoder().encode("hello cairn");
      const large = await patternBytes(largeSize, 7);
      for (const bytes of [small, large]) {
        const d = digestOf(bytes);
        await store.write(d, streamOf(bytes), { exact: bytes.byteLength });
        await expectStored(store, d, bytes);
      }
    },
  );

  if (stringKeys && retains) {
    test("getBytes refuses a value (or range) larger than maxSize", async (store) => {
      const bytes = await patternBytes(200_000, 13);
      await putBytes(store, "big-entry", bytes);
      await assertRejectsWithCode(getBytes(store, "big-entry", { maxSize: 199_999 }), Code.ResourceExhausted);
      const part = await getBytes(store, "big-entry", { maxSize: 1000, offset: 70_000, length: 1000 });
      assert.deepEqual(part, bytes.subarray(70_000, 71_000));
      assert.deepEqual(await getBytes(store, "big-entry", { maxSize: 200_000 }), bytes);
    });
  }

  test("range reads at the edges", async (store) => {
    const bytes = await patternBytes(largeSize, 11);
    const d = digestOf(bytes);
    await putBytes(store, d, bytes);
    if (!retains) {
      await assertRejectsWithCode(store.read(d, { offset: 0 }), Code.NotFound);
      return;
    }
    const read = (offset?: number, length?: number) =>
      getBytes(store, d, {
        maxSize: MAX,
        ...(offset === undefined ? {} : { offset }),
        ...(length === undefined ? {} : { length }),
      });
    const size = bytes.byteLength;
    assert.deepEqual(await read(0, 10), bytes.subarray(0, 10));
    assert.equal((await read(size)).byteLength, 0, "offset = size is an empty read");
    assert.equal((await read(0, 0)).byteLength, 0, "length 0 is an empty read");
    assert.equal((await read(5, 0)).byteLength, 0, "length 0 at an offset is an empty read");
    assert.deepEqual(await read(size - 3, 100), bytes.subarray(size - 3), "length past the end is clipped");
    const mid = (1 << 20) - 5;
    const got = await read(mid, (1 << 20) + 10);
    assert.ok(Buffer.compare(got, bytes.subarray(mid, mid + (1 << 20) + 10)) === 0, "range across chunks");
    const tail = await read(12345);
    assert.ok(Buffer.compare(tail, bytes.subarray(12345)) === 0, "offset without length reads to the end");
    await assertRejectsWithCode(store.read(d, { offset: size + 1 }), Code.OutOfRange);
  });

  test("empty blob", async (store) => {
    await store.write(EMPTY_DIGEST, bytesStream(new Uint8Array(0)), { exact: 0 });
    await expectStored(store, EMPTY_DIGEST, new Uint8Array(0));
    if (retains) {
      assert.equal((await getBytes(store, EMPTY_DIGEST, { maxSize: 0, offset: 0 })).byteLength, 0);
      await assertRejectsWithCode(store.read(EMPTY_DIGEST, { offset: 1 }), Code.OutOfRange);
    }
  });

  test("missing key is NOT_FOUND and absent from hasMany", async (store) => {
    const d = digestOf(new TextEncoder().encode("never written"));
    await assertRejectsWithCode(store.read(d), Code.NotFound);
    assert.deepEqual(await store.hasMany([d]), [undefined]);
    if (stringKeys) {
      await assertRejectsWithCode(store.read("missing/key"), Code.NotFound);
      assert.deepEqual(await store.hasMany(["missing/key"]), [undefined]);
    }
  });

  test("size mismatch on write is INVALID_ARGUMENT and stores nothing", async (store) => {
    const bytes = await patternBytes(300_000, 3);
    const d = digestOf(bytes);
    // Too short: the stream ends before the digest's size.
    await assertRejectsWithCode(
      store.write(d, streamOf(bytes.subarray(0, 299_999)), { exact: d.size }),
      Code.InvalidArgument,
    );
    assert.equal(await has(store, d), undefined);
    // Too long: more bytes than announced.
    const longer = new Uint8Array(300_001);
    longer.set(bytes);
    await assertRejectsWithCode(store.write(d, streamOf(longer), { exact: d.size }), Code.InvalidArgument);
    assert.equal(await has(store, d), undefined);
    // Announced size disagrees with the digest.
    await assertRejectsWithCode(store.write(d, streamOf(bytes), { exact: d.size + 1 }), Code.InvalidArgument);
    assert.equal(await has(store, d), undefined);
    if (stringKeys) {
      await assertRejectsWithCode(
        store.write("limited", streamOf(bytes), { max: 1000 }),
        Code.InvalidArgument,
      );
      await assertRejectsWithCode(
        store.write("exact", streamOf(bytes), { exact: 1000 }),
        Code.InvalidArgument,
      );
      assert.deepEqual(await store.hasMany(["limited", "exact"]), [undefined, undefined]);
    }
    // The store still works afterwards.
    await putBytes(store, d, bytes);
    await expectStored(store, d, bytes);
  });

  if (options.verifiesHash) {
    test("wrong content for a digest is INVALID_ARGUMENT and stores nothing", async (store) => {
      const bytes = await patternBytes(200_000, 5);
      const d = digestOf(bytes);
      const other = bytes.slice();
      other[100_000] = other[100_000]! ^ 1;
      const err = await assertRejectsWithCode(putBytes(store, d, other), Code.InvalidArgument);
      assert.match(err.message, new RegExp(d.hash));
      assert.equal(await has(store, d), undefined);
    });
  }

  test("a failing source stream stores nothing", async (store) => {
    const bytes = await patternBytes(500_000, 9);
    const d = digestOf(bytes);
    const err = await assertRejectsWithCode(
      store.write(d, streamOf(bytes.subarray(0, 200_000), 65536, new Error("client went away")), {
        exact: d.size,
      }),
      Code.Internal,
    );
    assert.match(err.message, /client went away/);
    assert.equal(await has(store, d), undefined);
  });

  test("concurrent writers and readers of one key", async (store) => {
    const bytes = await patternBytes(largeSize, 13);
    const d = digestOf(bytes);
    await Promise.all(Array.from({ length: 4 }, () => store.write(d, streamOf(bytes), { exact: d.size })));
    await expectStored(store, d, bytes);
    // Readers while more writers of the same content run.
    const readers = retains
      ? Array.from({ length: 4 }, async () => {
        const got = await getBytes(store, d, { maxSize: MAX });
        assert.ok(Buffer.compare(got, bytes) === 0, "a concurrent reader saw wrong bytes");
      })
      : [];
    const writers = Array.from({ length: 3 }, () => store.write(d, streamOf(bytes), { exact: d.size }));
    await Promise.all([...readers, ...writers]);
    await expectStored(store, d, bytes);
    // Different keys in parallel.
    const many = await Promise.all(Array.from({ length: 8 }, (_, i) => patternBytes(10_000 + i, 100 + i)));
    await Promise.all(many.map((b) => putBytes(store, digestOf(b), b)));
    for (const b of many) await expectStored(store, digestOf(b), b);
  });

  test("cancelling a read mid-stream releases it", async (store) => {
    const bytes = await patternBytes(largeSize, 17);
    const d = digestOf(bytes);
    await putBytes(store, d, bytes);
    if (!retains) return void (await assertRejectsWithCode(store.read(d), Code.NotFound));
    for (let i = 0; i < 3; i++) {
      const stream = await store.read(d);
      const reader = stream.getReader();
      const first = await reader.read();
      assert.equal(first.done, false);
      await reader.cancel("not interested");
    }
    // Aborting through the signal before and during a read.
    const ac = new AbortController();
    const stream = await store.read(d, { signal: ac.signal });
    const reader = stream.getReader();
    await reader.read();
    ac.abort();
    await reader.cancel().catch(() => {});
    const stopped = new AbortController();
    stopped.abort();
    await assertRejectsWithCode(store.read(d, { signal: stopped.signal }), Code.Cancelled);
    // The blob is intact afterwards.
    await expectStored(store, d, bytes);
  });

  test("aborting a write stores nothing", async (store) => {
    const bytes = await patternBytes(400_000, 19);
    const d = digestOf(bytes);
    const ac = new AbortController();
    let sent = 0;
    let release: () => void = () => {};
    const stalled = new Promise<void>((r) => (release = r));
    let cancelledSource = false;
    const source = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (sent >= 200_000) {
          ac.abort(new Error("client cancelled"));
          await stalled;
          return;
        }
        c.enqueue(bytes.slice(sent, sent + 50_000));
        sent += 50_000;
      },
      cancel() {
        cancelledSource = true;
        release();
      },
    });
    await assertRejectsWithCode(
      store.write(d, source, { exact: d.size }, { signal: ac.signal }),
      Code.Cancelled,
    );
    release();
    assert.ok(cancelledSource, "the source stream was not cancelled");
    assert.equal(await has(store, d), undefined);
    // An already-aborted signal refuses the write up front.
    await assertRejectsWithCode(
      store.write(d, streamOf(bytes), { exact: d.size }, { signal: ac.signal }),
      Code.Cancelled,
    );
    assert.equal(await has(store, d), undefined);
  });

  if (stringKeys) {
    test("string keys round trip and overwrite", async (store) => {
      const keys = ["ac/simple", "weird key: ünïcödé/../..\\x", "k".repeat(300), "."];
      for (const [i, key] of keys.entries()) {
        const bytes = await patternBytes(1000 + i, 40 + i);
        await store.write(key, streamOf(bytes), { max: 1 << 20 });
        await expectStored(store, key, bytes);
      }
      const next = new TextEncoder().encode("second value");
      await putBytes(store, keys[0]!, next);
      await expectStored(store, keys[0]!, next);
      // A string key never collides with a digest key of the same text.
      const d = digestOf(next);
      assert.equal(await has(store, d), undefined);
    });
  }

  test("hasMany answers many mixed keys in order", async (store) => {
    const present: Digest[] = [];
    const absent: Digest[] = [];
    for (let i = 0; i < 60; i++) {
      const b = new TextEncoder().encode(`blob number ${i}`);
      const d = digestOf(b);
      if (i % 2 === 0) {
        await putBytes(store, d, b);
        present.push(d);
      } else absent.push(d);
    }
    const keys: StoreKey[] = [];
    const want: (number | undefined)[] = [];
    for (let i = 0; i < 30; i++) {
      keys.push(present[i]!, absent[i]!);
      want.push(retains ? present[i]!.size : undefined, undefined);
    }
    if (stringKeys) {
      await putBytes(store, "s1", new Uint8Array(7));
      keys.push("s1", "s2");
      want.push(retains ? 7 : undefined, undefined);
    }
    assert.deepEqual(await store.hasMany(keys), want);
    assert.deepEqual(await store.hasMany([]), []);
  });

  if (retains) {
    test("a read stream can be consumed slowly while the key is rewritten", async (store) => {
      const bytes = await patternBytes(largeSize, 23);
      const d = digestOf(bytes);
      await putBytes(store, d, bytes);
      const stream = await store.read(d);
      await putBytes(store, d, bytes);
      const got = await collectBytes(stream, MAX);
      assert.ok(Buffer.compare(got, bytes) === 0);
    });
  }
}
