import assert from "node:assert/strict";
import { EMPTY_SHA256 } from "./digest.ts";
import {
  formatReadResourceName,
  formatWriteResourceName,
  parseReadResourceName,
  parseWriteResourceName,
} from "./resource_name.ts";
import { CairnError, Code } from "../util/error.ts";

const H = EMPTY_SHA256;

function invalid(fn: () => unknown, pattern: RegExp) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CairnError);
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.message, pattern);
    return true;
  });
}

Deno.test("Read resource names parse from the right with empty or multi-segment instances", () => {
  assert.deepEqual(parseReadResourceName(`blobs/${H}/0`), {
    instanceName: "",
    compressor: "identity",
    digest: { hash: H, size: 0 },
  });
  assert.deepEqual(parseReadResourceName(`a/b/c/blobs/${H}/42`).instanceName, "a/b/c");
  const z = parseReadResourceName(`main/compressed-blobs/zstd/${H}/7`);
  assert.deepEqual([z.instanceName, z.compressor, z.digest.size], ["main", "zstd", 7]);
  assert.equal(parseReadResourceName(`main/blobs/sha256/${H}/7`).digest.size, 7);
  assert.equal(parseReadResourceName(`compressed-blobs/zstd/sha256/${H}/7`).compressor, "zstd");
});

Deno.test("Write resource names find uploads/{uuid} and keep optional metadata", () => {
  const w = parseWriteResourceName(`x/y/uploads/1234-uuid/blobs/${H}/10/some/meta/data`);
  assert.deepEqual(w, {
    instanceName: "x/y",
    compressor: "identity",
    digest: { hash: H, size: 10 },
    uuid: "1234-uuid",
    metadata: "some/meta/data",
  });
  const z = parseWriteResourceName(`uploads/u/compressed-blobs/zstd/${H}/3`);
  assert.deepEqual([z.instanceName, z.compressor, z.metadata], ["", "zstd", ""]);
  assert.equal(formatWriteResourceName(w), `x/y/uploads/1234-uuid/blobs/${H}/10/some/meta/data`);
  assert.equal(formatReadResourceName(z), `compressed-blobs/zstd/${H}/3`);
});

Deno.test("Bad resource names are INVALID_ARGUMENT saying what is wrong", () => {
  invalid(() => parseReadResourceName(""), /expected/);
  invalid(() => parseReadResourceName(`blobs/${H}`), /expected/);
  invalid(() => parseReadResourceName(`blobs/${H}/-1`), /size "-1"/);
  invalid(() => parseReadResourceName(`blobs/${H}/1e3`), /size "1e3"/);
  invalid(() => parseReadResourceName(`blobs/${H}/99999999999999999999`), /too large/);
  invalid(() => parseReadResourceName(`blobs/ABC/1`), /hash/);
  invalid(() => parseReadResourceName(`compressed-blobs/brotli/${H}/1`), /compressor "brotli"/);
  invalid(() => parseReadResourceName(`blobs/blake3/${H}/1`), /digest function "blake3"/);
  invalid(() => parseReadResourceName(`main/things/${H}/1`), /unexpected segment "things"/);
  invalid(() => parseReadResourceName(`uploads/blobs/${H}/1`), /reserved keyword/);
  invalid(() => parseWriteResourceName(`main/blobs/${H}/1`), /uploads/);
  invalid(() => parseWriteResourceName(`uploads//blobs/${H}/1`), /uuid/);
  invalid(() => parseWriteResourceName(`uploads/u/things/${H}/1`), /"blobs" or "compressed-blobs"/);
  invalid(() => parseWriteResourceName(`uploads/u/blobs/${H}`), /hash or size/);
  invalid(() => parseWriteResourceName(`uploads/u/compressed-blobs/lz4/${H}/1`), /compressor "lz4"/);
});

Deno.test("Resource names: negative sizes and oversized names are INVALID_ARGUMENT, echoed only in part", () => {
  invalid(() => parseReadResourceName(`blobs/${H}/-1`), /not a non-negative integer/);
  invalid(() => parseWriteResourceName(`uploads/u/blobs/${H}/-5`), /not a non-negative integer/);
  const long = `${"i".repeat(2000)}/blobs/${H}/0`;
  invalid(() => parseReadResourceName(long), /instance name is 2000 characters/);
  for (
    const name of [`${"x/".repeat(50_000)}blobs/${H}/0`, `uploads/u/blobs/${H}/0/${"m".repeat(100_000)}`]
  ) {
    assert.throws(
      () => name.startsWith("uploads") ? parseWriteResourceName(name) : parseReadResourceName(name),
      (err: unknown) =>
        err instanceof CairnError && err.code === Code.InvalidArgument && err.message.length < 400,
    );
  }
});
