/**
 * The one shared behaviour suite every store kind runs: round trips, range edges, empty blob, missing
 * keys, size mismatches, concurrency, cancellation and abort, string keys, `hasMany` batches, and
 * action-cache keys ({@linkcode runAcKeyConformance}: ActionResults whose length differs from the action
 * digest's size, which no store may check against it).
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
import { create, toBinary } from "@bufbuild/protobuf";
import { type Digest, digestOf, EMPTY_DIGEST, formatDigest } from "../digest/digest.ts";
import { ActionResultSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { CairnError, Code, codeName } from "../util/error.ts";
import { bytesStream, collectBytes, patternBytes } from "../util/streams.ts";
import { acKey, getBytes, has, putBytes } from "./helpers.ts";
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
  /** CAS digest keys are supported (false for a `grpc` store of `store_type: "ac"`). Default true. */
  readonly casKeys?: boolean;
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

  runAcKeyConformance(name, makeStore, options);
}

/** An encoded ActionResult of about `stdoutBytes` bytes (no output digests, so it is always complete). */
async function encodedResult(stdoutBytes: number, seed: number): Promise<Uint8Array> {
  return toBinary(
    ActionResultSchema,
    create(ActionResultSchema, { exitCode: seed, stdoutRaw: await patternBytes(stdoutBytes, seed) }),
  );
}

/**
 * Registers the action-cache key cases for a store kind (part of {@linkcode runStoreConformance}; run it
 * alone for stores that hold only AC keys). Every value is an encoded ActionResult whose length differs
 * from its action digest's size, once shorter and once longer.
 */
export function runAcKeyConformance(
  name: string,
  makeStore: () => Promise<StoreUnderTest>,
  options: ConformanceOptions = {},
): void {
  const retains = options.retains ?? true;
  const stringKeys = options.stringKeys ?? true;
  const casKeys = options.casKeys ?? true;

  const test = (behaviour: string, fn: (store: StoreDriver) => Promise<void>) =>
    Deno.test(`${name}: ${behaviour}`, async () => {
      const { store, cleanup } = await makeStore();
      try {
        await fn(store);
      } finally {
        await cleanup();
      }
    });

  /** An action (its bytes and digest) and a result of a different length. */
  const entry = async (actionSize: number, resultStdout: number, seed: number) => {
    const action = await patternBytes(actionSize, seed);
    const result = await encodedResult(resultStdout, seed);
    assert.notEqual(result.byteLength, action.byteLength);
    return { action, digest: digestOf(action), key: acKey(digestOf(action)), result };
  };

  const expectResult = async (store: StoreDriver, key: StoreKey, bytes: Uint8Array) => {
    if (!retains) {
      assert.equal(await has(store, key), undefined);
      await assertRejectsWithCode(store.read(key), Code.NotFound);
      return;
    }
    assert.equal(await has(store, key), bytes.byteLength, "hasMany reports the ActionResult's length");
    const whole = await getBytes(store, key, { maxSize: MAX });
    assert.ok(Buffer.compare(whole, bytes) === 0, "getBytes returned other bytes");
    const streamed = await collectBytes(await store.read(key), MAX);
    assert.ok(Buffer.compare(streamed, bytes) === 0, "read returned other bytes");
  };

  test("action-cache keys hold results shorter and longer than the action (write, hasMany, read, getBytes)", async (store) => {
    // Shorter than the action (a big action, a tiny result) and longer (a tiny action, a big result).
    const cases = [await entry(5000, 3, 1), await entry(40, 300_000, 2)];
    await store.write(cases[0]!.key, streamOf(cases[0]!.result), { exact: cases[0]!.result.byteLength });
    await store.write(cases[1]!.key, streamOf(cases[1]!.result, 7000), { max: 1 << 20 });
    for (const c of cases) await expectResult(store, c.key, c.result);
    if (!retains) return;
    const big = cases[1]!;
    const part = await getBytes(store, big.key, { maxSize: MAX, offset: 100_000, length: 50_000 });
    assert.ok(Buffer.compare(part, big.result.subarray(100_000, 150_000)) === 0, "range of an AC entry");
    const tail = await getBytes(store, big.key, { maxSize: MAX, offset: big.result.byteLength - 9 });
    assert.deepEqual(tail, big.result.subarray(big.result.byteLength - 9));
    assert.equal(
      (await getBytes(store, big.key, { maxSize: MAX, offset: big.result.byteLength })).byteLength,
      0,
      "offset = length is an empty read",
    );
    await assertRejectsWithCode(
      store.read(big.key, { offset: big.result.byteLength + 1 }),
      Code.OutOfRange,
    );
    await assertRejectsWithCode(getBytes(store, big.key, { maxSize: 1000 }), Code.ResourceExhausted);
  });

  test("action-cache keys overwrite and never collide with the action's CAS blob or a string", async (store) => {
    const e = await entry(700, 2000, 3);
    await putBytes(store, e.key, e.result);
    const second = await encodedResult(10, 4);
    await putBytes(store, e.key, second);
    await expectResult(store, e.key, second);
    if (casKeys) {
      assert.equal(await has(store, e.digest), undefined, "an AC entry is not the action's CAS blob");
      await putBytes(store, e.digest, e.action);
      await expectResult(store, e.key, second);
      if (retains) {
        assert.deepEqual(await getBytes(store, e.digest, { maxSize: MAX }), e.action);
        assert.deepEqual(await store.hasMany([e.digest, e.key]), [e.action.byteLength, second.byteLength]);
      }
    }
    if (stringKeys) {
      const texts = [formatDigest(e.digest), `ac:${formatDigest(e.digest)}`];
      for (const text of texts) assert.equal(await has(store, text), undefined, `string key ${text}`);
      const other = new TextEncoder().encode("a record named like the entry");
      for (const text of texts) await putBytes(store, text, other);
      await expectResult(store, e.key, second);
      for (const text of texts) await expectResult(store, text, other);
    }
  });

  test("a missing action-cache key is NOT_FOUND; hasMany answers AC keys in order", async (store) => {
    const present = await Promise.all([0, 1, 2].map((i) => entry(100 + i * 1000, 50 + i * 999, 10 + i)));
    const absent = await Promise.all([0, 1, 2].map((i) => entry(200 + i * 1000, 60, 20 + i)));
    await assertRejectsWithCode(store.read(absent[0]!.key), Code.NotFound);
    for (const e of present) await putBytes(store, e.key, e.result);
    const keys: StoreKey[] = [];
    const want: (number | undefined)[] = [];
    present.forEach((e, i) => {
      keys.push(e.key, absent[i]!.key);
      want.push(retains ? e.result.byteLength : undefined, undefined);
    });
    if (casKeys) {
      // The actions' own digests are CAS keys: absent, as no blob was written.
      keys.push(present[0]!.digest);
      want.push(undefined);
    }
    assert.deepEqual(await store.hasMany(keys), want);
  });

  test("an action-cache write of the wrong size is INVALID_ARGUMENT and stores nothing", async (store) => {
    const e = await entry(300, 4000, 30);
    const n = e.result.byteLength;
    await assertRejectsWithCode(
      store.write(e.key, streamOf(e.result), { exact: n + 1 }),
      Code.InvalidArgument,
    );
    await assertRejectsWithCode(
      store.write(e.key, streamOf(e.result), { exact: n - 1 }),
      Code.InvalidArgument,
    );
    await assertRejectsWithCode(store.write(e.key, streamOf(e.result), { max: n - 1 }), Code.InvalidArgument);
    assert.equal(await has(store, e.key), undefined);
    // The announced size of the action itself means nothing for its entry.
    await store.write(e.key, streamOf(e.result), { exact: n });
    await expectResult(store, e.key, e.result);
  });
}
