// Back-pressure both ways on the gRPC path: a slow reader stops a server-streaming impl from producing,
// and a slow client-streaming impl stops the client from pushing (nothing is buffered whole).
import assert from "node:assert/strict";
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ByteStream,
  ReadRequestSchema,
  WriteRequestSchema,
} from "../src/gen/google/bytestream/bytestream_pb.ts";
import { bindService } from "../src/transport/bind_service.ts";
import { encodeFrame } from "../src/transport/grpc_frame.ts";
import { startServer } from "./fixtures/transport_fixtures.ts";

const CHUNK = 64 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("back-pressure: a paused reader stalls a server-streaming impl; a slow impl stalls the writer", async () => {
  let produced = 0;
  let consumed = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const { server, port } = await startServer({
    bindings: [bindService(ByteStream, {
      async *read(_req, ctx) {
        const data = new Uint8Array(CHUNK);
        while (!ctx.signal.aborted) {
          produced++;
          yield { data };
        }
      },
      async write(requests) {
        await gate;
        for await (const r of requests) consumed += r.data.length;
        return { committedSize: BigInt(consumed) };
      },
    })],
  });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    // server streaming: read the headers, then stop reading
    const read = session.request({
      ":method": "POST",
      ":path": "/google.bytestream.ByteStream/Read",
      "content-type": "application/grpc",
    });
    read.on("error", () => {});
    read.end(
      encodeFrame(toBinary(ReadRequestSchema, create(ReadRequestSchema, { resourceName: "x" })), false),
    );
    await new Promise((r) => read.once("response", r));
    read.pause();
    await sleep(300);
    const stalledAt = produced;
    await sleep(300);
    assert.ok(
      produced - stalledAt <= 1,
      `the impl kept producing while nobody read (${stalledAt} → ${produced})`,
    );
    assert.ok(produced * CHUNK < 16 * 1024 * 1024, `${produced} chunks produced for a paused reader`);
    read.resume();
    let got = 0;
    read.on("data", (d: Buffer) => got += d.length);
    await sleep(200);
    assert.ok(produced > stalledAt, "producing resumes once the reader reads");
    assert.ok(got > 0);
    read.close(http2.constants.NGHTTP2_CANCEL);

    // client streaming: the impl does not read yet; the client's writes stop being accepted
    const write = session.request({
      ":method": "POST",
      ":path": "/google.bytestream.ByteStream/Write",
      "content-type": "application/grpc",
    });
    write.on("error", () => {});
    let responded: http2.IncomingHttpHeaders | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;
    write.on("response", (h) => responded = h);
    write.on("trailers", (t) => trailers = t);
    write.on("data", () => {});
    const frame = encodeFrame(
      toBinary(
        WriteRequestSchema,
        create(WriteRequestSchema, { resourceName: "y", data: new Uint8Array(CHUNK) }),
      ),
      false,
    );
    let accepted = 0;
    const sentBefore = session.socket.bytesWritten;
    const deadline = Date.now() + 500;
    while (Date.now() < deadline && accepted < 8 * 1024 * 1024) {
      if (write.write(frame)) accepted += frame.length;
      else {
        accepted += frame.length;
        const drained = await Promise.race([
          new Promise((r) => write.once("drain", () => r(true))),
          sleep(150),
        ]);
        if (!drained) break;
      }
    }
    // Deno's http2 client queues writes without regard to flow control, so measure what reached the wire
    await sleep(200);
    const onWire = session.socket.bytesWritten - sentBefore;
    // At most about one stream window (the server's default is 2 MiB) may sit unread on the server's side.
    assert.ok(
      onWire < 3 * 1024 * 1024,
      `${onWire} of ${accepted} bytes reached a server whose impl does not read`,
    );
    assert.equal(consumed, 0);
    release();
    write.end();
    await new Promise((r) => write.once("end", r));
    assert.equal(responded?.[":status"], 200);
    assert.equal(trailers?.["grpc-status"], "0");
    assert.ok(consumed > 0 && consumed <= accepted);
  } finally {
    session.close();
    await server.close(100);
  }
});
