/**
 * Guards the Deno 2.9.0 internals `deno_serve_trailers.ts` relies on. When this fails, Deno changed them:
 * the Deno.serve gRPC path (listener `server: "deno_serve"`) cannot end calls with a status; switch
 * listeners to `node_http2` and rework the module.
 *
 * @example
 * ```sh
 * deno test --allow-all src/transport/deno_compat/deno_serve_trailers_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import grpc from "@grpc/grpc-js";
import { responseWithTrailers } from "./deno_serve_trailers.ts";

Deno.test("Deno internals: addTrailers and the request/response symbols exist", async () => {
  const d = Deno as unknown as Record<symbol, Record<string, unknown>> & { internal: symbol };
  assert.equal(typeof d[d.internal]?.addTrailers, "function", "Deno[Deno.internal].addTrailers is gone");
  assert.ok(
    Object.getOwnPropertySymbols(new Response(null)).some((s) => s.description === "response"),
    "a Response has no symbol 'response'",
  );
  const seen: string[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const inner = Object.getOwnPropertySymbols(req).find((s) => s.description === "request");
    seen.push(inner === undefined ? "no symbol" : typeof (req as never)[inner]);
    const external = inner && (req as unknown as Record<symbol, { external?: unknown }>)[inner]?.external;
    seen.push(external ? "external" : "no external");
    return new Response("ok");
  });
  await (await fetch(`http://127.0.0.1:${server.addr.port}/`)).text();
  assert.deepEqual(seen, ["object", "external"]);
});

Deno.test("Deno internals: a grpc-js client sees grpc-status in real trailers", async () => {
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
    const { response, setTrailers } = responseWithTrailers(req, body, [["content-type", "application/grpc"]]);
    void req.arrayBuffer().then(() => {
      controller.enqueue(new Uint8Array([0, 0, 0, 0, 3, 0x61, 0x62, 0x63])); // one 3-byte message "abc"
      setTrailers([["grpc-status", "0"], ["x-trailer", "t"]]);
      controller.close();
    });
    return response;
  });
  const client = new grpc.Client(`127.0.0.1:${server.addr.port}`, grpc.credentials.createInsecure());
  try {
    const result = await new Promise<{ message: string; trailer: grpc.Metadata; code: number }>(
      (resolve, reject) => {
        let message = "";
        let trailer: grpc.Metadata | undefined;
        const call = client.makeUnaryRequest(
          "/t.T/M",
          (v: Buffer) => v,
          (b: Buffer) => b.toString(),
          Buffer.alloc(0),
          (err, res) => {
            if (err) return reject(err);
            message = res as string;
          },
        );
        call.on("status", (s: grpc.StatusObject) => {
          trailer = s.metadata;
          resolve({ message, trailer, code: s.code });
        });
      },
    );
    assert.equal(result.code, grpc.status.OK);
    assert.equal(result.message, "abc");
    assert.deepEqual(result.trailer.get("x-trailer"), ["t"]);
  } finally {
    client.close();
  }
});
