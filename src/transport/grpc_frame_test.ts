import assert from "node:assert/strict";
import { encodeFrame, frameHeader, FrameParser, parseGrpcTimeout, parseSingleFrame } from "./grpc_frame.ts";
import { CairnError, Code } from "../util/error.ts";

Deno.test("FrameParser reassembles frames split at every byte boundary", () => {
  const frames = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(300).fill(7)];
  const wire = new Uint8Array(frames.reduce((n, f) => n + 5 + f.length, 0));
  let off = 0;
  for (const f of frames) {
    wire.set(encodeFrame(f, false), off);
    off += 5 + f.length;
  }
  for (const step of [1, 2, 4, 5, 6, 64, wire.length]) {
    const parser = new FrameParser(1024);
    const got: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i += step) {
      parser.push(wire.subarray(i, i + step));
      for (let f = parser.next(); f; f = parser.next()) got.push(f.data);
    }
    parser.finish();
    assert.deepEqual(got, frames, `step ${step}`);
  }
});

Deno.test("FrameParser rejects oversized frames and a stream ending inside a frame", () => {
  const parser = new FrameParser(10);
  parser.push(frameHeader(11, false));
  assert.throws(() => parser.next(), (e) => e instanceof CairnError && e.code === Code.ResourceExhausted);
  const p2 = new FrameParser(10);
  p2.push(new Uint8Array([0, 0, 0, 0, 4, 1]));
  assert.equal(p2.next(), undefined);
  assert.throws(() => p2.finish(), (e) => e instanceof CairnError && e.code === Code.Internal);
});

Deno.test("parseSingleFrame takes exactly one frame", () => {
  const f = parseSingleFrame(encodeFrame(new Uint8Array([9]), true), 100);
  assert.equal(f.compressed, true);
  assert.deepEqual(f.data, new Uint8Array([9]));
  assert.throws(() => parseSingleFrame(new Uint8Array(0), 100), /has no message/);
  assert.throws(
    () => parseSingleFrame(new Uint8Array([0, 0, 0, 0, 100, 1]), 100),
    /truncated frame \(1 of 100/,
  );
  assert.throws(() => parseSingleFrame(new Uint8Array([0, 0, 0, 0, 0, 0]), 100), /more than one message/);
  assert.throws(() => parseSingleFrame(new Uint8Array([2, 0, 0, 0, 0]), 100), /unknown frame flags/);
});

Deno.test("grpc-timeout units", () => {
  assert.equal(parseGrpcTimeout(undefined), undefined);
  assert.equal(parseGrpcTimeout("2S"), 2000);
  assert.equal(parseGrpcTimeout("1H"), 3_600_000);
  assert.equal(parseGrpcTimeout("1500m"), 1500);
  assert.equal(parseGrpcTimeout("3000u"), 3);
  assert.throws(() => parseGrpcTimeout("123456789S"), /Invalid grpc-timeout/);
  assert.throws(() => parseGrpcTimeout("5x"), /Invalid grpc-timeout/);
  assert.throws(() => parseGrpcTimeout("S"), /Invalid grpc-timeout/);
});
