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
import { waitForQuiet, waitUntil, withTimeout } from "./fixtures/wait.ts";

const CHUNK = 64 * 1024;
/** Nothing signals that something stopped: a counter that has not moved for this long has stalled. */
const QUIET_MS = 500;

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
    const bounded = () => {
      assert.ok(produced * CHUNK < 16 * 1024 * 1024, `${produced} chunks produced for a paused reader`);
      return produced;
    };
    const stalledAt = await waitForQuiet(bounded, { quietMs: QUIET_MS, what: "the impl to stall" });
    read.resume();
    let got = 0;
    read.on("data", (d: Buffer) => got += d.length);
    await waitUntil(() => produced > stalledAt && got > 0, {
      what: "producing to resume once the reader reads",
    });
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
    const wire = () => session.socket.bytesWritten - sentBefore;
    while (accepted < 8 * 1024 * 1024) {
      accepted += frame.length;
      if (write.write(frame)) continue;
      // Buffer full: go on if it drains before the bytes on the wire stop moving.
      const stop = new AbortController();
      let onDrain!: () => void;
      const drained = await Promise.race([
        new Promise<boolean>((r) => write.once("drain", onDrain = () => r(true))),
        waitForQuiet(wire, { quietMs: QUIET_MS, what: "the client's bytes on the wire", signal: stop.signal })
          .then(() => false),
      ]);
      stop.abort();
      write.off("drain", onDrain);
      if (!drained) break;
    }
    // Deno's http2 client queues writes without regard to flow control, so measure what reached the wire
    // once it stopped moving.
    const onWire = await waitForQuiet(wire, { quietMs: QUIET_MS, what: "the client's bytes on the wire" });
    // At most about one stream window (the server's default is 2 MiB) may sit unread on the server's side.
    assert.ok(
      onWire < 3 * 1024 * 1024,
      `${onWire} of ${accepted} bytes reached a server whose impl does not read`,
    );
    assert.equal(consumed, 0);
    release();
    write.end();
    await withTimeout(new Promise((r) => write.once("end", r)), "the Write call to end");
    assert.equal(responded?.[":status"], 200);
    assert.equal(trailers?.["grpc-status"], "0");
    assert.ok(consumed > 0 && consumed <= accepted);
  } finally {
    session.close();
    await server.close(100);
  }
});
