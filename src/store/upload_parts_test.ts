import assert from "node:assert/strict";
import { CairnError, Code } from "../util/error.ts";
import { bytesStream } from "../util/streams.ts";
import { readInParts, type UploadReadOptions } from "./upload_parts.ts";

function base(expected: number | undefined, limit: number, signal?: AbortSignal): UploadReadOptions {
  return {
    label: "blob",
    expected,
    limit,
    signal,
    cancelled: () => new CairnError(Code.Cancelled, "cancelled"),
  };
}

async function split(size: number, partSize: number) {
  const parts: number[] = [];
  const r = await readInParts(bytesStream(new Uint8Array(size)), {
    ...base(size, size),
    partSize,
    alloc: (n) => new Uint8Array(n),
    onPart: (p) => Promise.resolve(void parts.push(p.byteLength)),
  });
  return { parts, rest: r.rest.byteLength, count: r.parts, total: r.total };
}

Deno.test("readInParts: a value of one part stays whole; a part goes out only once more bytes follow", async () => {
  assert.deepEqual(await split(8, 8), { parts: [], rest: 8, count: 0, total: 8 });
  assert.deepEqual(await split(9, 8), { parts: [8], rest: 1, count: 1, total: 9 });
  assert.deepEqual(await split(16, 8), { parts: [8], rest: 8, count: 1, total: 16 });
  assert.deepEqual(await split(0, 8), { parts: [], rest: 0, count: 0, total: 0 });
});

Deno.test("readInParts: more bytes than announced, fewer than expected, or a cancel fail with their codes", async () => {
  const opts = { partSize: 4, alloc: (n: number) => new Uint8Array(n), onPart: () => Promise.resolve() };
  const code = (err: unknown) => (err as CairnError).code;
  await assert.rejects(
    readInParts(bytesStream(new Uint8Array(10)), { ...base(undefined, 9), ...opts }),
    (e) => code(e) === Code.InvalidArgument && /more than the 9 bytes/.test((e as Error).message),
  );
  await assert.rejects(
    readInParts(bytesStream(new Uint8Array(5)), { ...base(6, 6), ...opts }),
    (e) => code(e) === Code.InvalidArgument && /expected 6 bytes, got 5/.test((e as Error).message),
  );
  await assert.rejects(
    readInParts(bytesStream(new Uint8Array(5)), { ...base(5, 5, AbortSignal.abort()), ...opts }),
    (e) => code(e) === Code.Cancelled,
  );
});
