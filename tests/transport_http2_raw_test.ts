// Hand-written HTTP/2 clients against the gRPC path: malformed frames, trailers-only errors, compression
// flags, and that one bad call never costs the connection or the server.
import { serverPathOf } from "../src/transport/server.ts";
import assert from "node:assert/strict";
import http2 from "node:http2";
import zlib from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../src/gen/grpc/health/v1/health_pb.ts";
import { ReadRequestSchema, ReadResponseSchema } from "../src/gen/google/bytestream/bytestream_pb.ts";
import { encodeFrame, FrameParser } from "../src/transport/grpc_frame.ts";
import { byteStreamBinding, healthBinding, startServer } from "./fixtures/transport_fixtures.ts";

interface RawResult {
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders;
}

function rawCall(
  session: http2.ClientHttp2Session,
  path: string,
  body: Uint8Array,
  extra: http2.OutgoingHttpHeaders = {},
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...extra,
    });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => headers = h);
    req.on("trailers", (t) => trailers = t);
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve({ headers, body: Buffer.concat(chunks), trailers }));
    req.on("error", reject);
    req.end(body);
  });
}

const CHECK = "/grpc.health.v1.Health/Check";
const okRequest = encodeFrame(
  toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {})),
  false,
);

function status(r: RawResult): string | undefined {
  return (r.trailers["grpc-status"] ?? r.headers["grpc-status"]) as string | undefined;
}

async function withSession(
  fn: (session: http2.ClientHttp2Session) => Promise<void>,
  listener: Record<string, unknown> = {},
): Promise<void> {
  const { server, port } = await startServer({
    bindings: [healthBinding(), byteStreamBinding(new Map([["blob", new Uint8Array(300_000).fill(9)]]))],
    listener,
  });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    await fn(session);
  } finally {
    session.close();
    await server.close(100);
  }
}

Deno.test("a frame header claiming 100 bytes then the end of stream → INTERNAL, connection keeps serving", async () => {
  await withSession(async (session) => {
    const truncated = new Uint8Array([0, 0, 0, 0, 100, 1, 2, 3]);
    const bad = await rawCall(session, CHECK, truncated);
    assert.equal(status(bad), "13");
    assert.match(String(bad.trailers["grpc-message"] ?? bad.headers["grpc-message"]), /truncated frame/);
    const good = await rawCall(session, CHECK, okRequest);
    assert.equal(status(good), "0");
    assert.equal(fromBinary(HealthCheckResponseSchema, good.body.subarray(5)).status, 1);
  });
});

Deno.test("malformed calls get a gRPC status, never a dropped connection", async () => {
  await withSession(async (session) => {
    const cases: [Uint8Array, string][] = [
      [new Uint8Array(0), "13"], // no message
      [new Uint8Array([0, 0, 0]), "13"], // truncated header
      [new Uint8Array([0x80, 0, 0, 0, 0]), "13"], // unknown flags
      [new Uint8Array([1, 0, 0, 0, 1, 0]), "13"], // compressed without grpc-encoding
      [encodeFrame(new Uint8Array([0xff, 0xff, 0xff]), false), "3"], // not a protobuf
      [new Uint8Array([...okRequest, ...okRequest]), "13"], // two messages for a unary call
      [new Uint8Array([0, 0x7f, 0, 0, 0]), "8"], // larger than max_decoding_message_size
    ];
    const results = await Promise.all(cases.map(([body]) => rawCall(session, CHECK, body)));
    assert.deepEqual(results.map(status), cases.map(([, s]) => s));
    const bogusTimeout = await rawCall(session, CHECK, okRequest, { "grpc-timeout": "soon" });
    assert.equal(status(bogusTimeout), "3");
    assert.equal(status(await rawCall(session, CHECK, okRequest)), "0");
  });
});

Deno.test("unknown method: trailers-only UNIMPLEMENTED", async () => {
  await withSession(async (session) => {
    const r = await rawCall(session, "/no.Such/Method", okRequest);
    assert.equal(r.headers[":status"], 200);
    // The Deno.serve path sends its headers before the call is routed: the status comes as trailers.
    if (serverPathOf({ socket_address: "" }) === "deno_serve") assert.equal(r.trailers["grpc-status"], "12");
    else assert.equal(r.headers["grpc-status"], "12");
    assert.equal(r.body.length, 0);
  });
});

Deno.test("a stream frame cut short mid-call → INTERNAL for client streaming too", async () => {
  await withSession(async (session) => {
    const r = await rawCall(
      session,
      "/google.bytestream.ByteStream/Write",
      new Uint8Array([0, 0, 0, 1, 0, 1]),
    );
    assert.equal(status(r), "13");
    assert.match(
      decodeURIComponent(String(r.trailers["grpc-message"] ?? r.headers["grpc-message"])),
      /inside a frame/,
    );
  });
});

Deno.test("gzip: a compressed request is read and a large response goes out compressed", async () => {
  await withSession(async (session) => {
    const gz = encodeFrame(
      zlib.gzipSync(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {}))),
      true,
    );
    const r1 = await rawCall(session, CHECK, gz, { "grpc-encoding": "gzip", "grpc-accept-encoding": "gzip" });
    assert.equal(status(r1), "0");
    const read = encodeFrame(
      toBinary(ReadRequestSchema, create(ReadRequestSchema, { resourceName: "blob" })),
      false,
    );
    const r2 = await rawCall(session, "/google.bytestream.ByteStream/Read", read, {
      "grpc-accept-encoding": "gzip",
    });
    assert.equal(status(r2), "0");
    assert.equal(r2.headers["grpc-encoding"], "gzip");
    const parser = new FrameParser(1 << 30);
    parser.push(r2.body);
    let total = 0;
    for (let f = parser.next(); f; f = parser.next()) {
      assert.equal(f.compressed, true);
      total += fromBinary(ReadResponseSchema, zlib.gunzipSync(f.data)).data.length;
    }
    assert.equal(total, 300_000);
    assert.ok(r2.body.length < 10_000, `compressed body is ${r2.body.length} bytes`);
    // a client that does not accept gzip gets plain frames
    const r3 = await rawCall(session, "/google.bytestream.ByteStream/Read", read);
    assert.equal(r3.headers["grpc-encoding"], undefined);
    assert.equal(r3.body[0], 0);
  }, { compression: { send_compression_algorithm: "gzip", accepted_compression_algorithms: ["gzip"] } });
});

Deno.test("a client reset mid-stream does not disturb other calls on the connection", async () => {
  await withSession(async (session) => {
    const read = encodeFrame(
      toBinary(ReadRequestSchema, create(ReadRequestSchema, { resourceName: "blob" })),
      false,
    );
    const req = session.request({
      ":method": "POST",
      ":path": "/google.bytestream.ByteStream/Read",
      "content-type": "application/grpc",
    });
    req.on("error", () => {});
    req.end(read);
    await new Promise((r) => req.once("response", r));
    req.close(http2.constants.NGHTTP2_CANCEL);
    const results = await Promise.all(Array.from({ length: 20 }, () => rawCall(session, CHECK, okRequest)));
    assert.ok(results.every((r) => status(r) === "0"));
  });
});
