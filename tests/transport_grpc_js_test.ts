// gRPC over cleartext HTTP/2 against Cairn's thin gRPC path, driven by @grpc/grpc-js (an independent
// implementation): unary, server/client streaming, errors with details, unknown methods, deadlines, gzip.
// Runs on the node:http2 path; CAIRN_SERVER_PATH=deno_serve runs it on the Deno.serve path.
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import grpc from "@grpc/grpc-js";
import { ByteStream } from "../src/gen/google/bytestream/bytestream_pb.ts";
import { PreconditionFailureSchema } from "../src/gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../src/gen/google/rpc/status_pb.ts";
import { Health, HealthCheckResponse_ServingStatus } from "../src/gen/grpc/health/v1/health_pb.ts";
import {
  byteStreamBinding,
  grpcJsClient,
  healthBinding,
  type HealthProbe,
  healthProbe,
  startServer,
} from "./fixtures/transport_fixtures.ts";
import { waitUntil } from "./fixtures/wait.ts";
import { serverPathOf } from "../src/transport/server.ts";

const HealthClient = grpcJsClient(Health);
const ByteStreamClient = grpcJsClient(ByteStream);

// deno-lint-ignore no-explicit-any
function unary(client: any, method: string, req: unknown, options: grpc.CallOptions = {}): Promise<any> {
  return new Promise((resolve, reject) => {
    client[method](req, new grpc.Metadata(), options, (err: grpc.ServiceError | null, res: unknown) => {
      if (err) reject(err);
      else resolve(res);
    });
  });
}

async function withServer(
  fn: (ctx: { port: number; probe: HealthProbe; blobs: Map<string, Uint8Array> }) => Promise<void>,
  listener: Record<string, unknown> = {},
  clientOptions: Record<string, unknown> = {},
): Promise<void> {
  const probe = healthProbe();
  const blobs = new Map<string, Uint8Array>();
  const { server, port } = await startServer({
    bindings: [healthBinding(probe), byteStreamBinding(blobs)],
    listener,
  });
  try {
    await fn({ port, probe, blobs });
  } finally {
    await server.close(100);
  }
  void clientOptions;
}

Deno.test("grpc-js unary call returns the impl's response", async () => {
  await withServer(async ({ port }) => {
    const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const res = await unary(client, "check", { service: "" });
      assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING);
      const many = await Promise.all(
        Array.from({ length: 50 }, () => unary(client, "check", { service: "" })),
      );
      assert.equal(many.length, 50);
    } finally {
      client.close();
    }
  });
});

Deno.test("grpc-js sees response headers and trailers set by the impl", async () => {
  await withServer(async ({ port }) => {
    const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const md = new grpc.Metadata();
      md.set("x-test", "hello");
      const seen = await new Promise<{ header: grpc.Metadata; trailer: grpc.Metadata }>((resolve, reject) => {
        let header: grpc.Metadata | undefined;
        const call = client.check({ service: "echo-header" }, md, (err: Error | null) => err && reject(err));
        call.on("metadata", (m: grpc.Metadata) => header = m);
        call.on("status", (s: grpc.StatusObject) => resolve({ header: header!, trailer: s.metadata }));
      });
      if (serverPathOf({ socket_address: "" }) === "deno_serve") {
        // Deno.serve path: headers go out before the impl runs, so its response headers ride the trailers.
        assert.deepEqual(seen.header.get("x-echo"), []);
        assert.deepEqual(seen.trailer.get("x-echo"), ["hello"]);
      } else {
        assert.deepEqual(seen.header.get("x-echo"), ["hello"]);
      }
      assert.deepEqual(seen.trailer.get("x-trailer"), ["t"]);
    } finally {
      client.close();
    }
  });
});

Deno.test("grpc-js gets a CairnError's code, message and details", async () => {
  await withServer(async ({ port }) => {
    const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const err = await unary(client, "check", { service: "fail" }).then(() => undefined, (e) => e);
      assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(err.details, "Cannot check: blob missing");
      const bin = err.metadata.get("grpc-status-details-bin")[0] as Buffer;
      const status = fromBinary(StatusSchema, bin);
      assert.equal(status.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(status.details[0]?.typeUrl, "type.googleapis.com/google.rpc.PreconditionFailure");
      const pf = fromBinary(PreconditionFailureSchema, status.details[0]!.value);
      assert.equal(pf.violations[0]?.subject, "blobs/abc/1");

      const boom = await unary(client, "check", { service: "boom" }).then(() => undefined, (e) => e);
      assert.equal(boom.code, grpc.status.INTERNAL);
      assert.equal(boom.details, "boom");
    } finally {
      client.close();
    }
  });
});

Deno.test("grpc-js gets UNIMPLEMENTED for unknown and unimplemented methods", async () => {
  await withServer(async ({ port }) => {
    const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const Unknown = grpc.makeGenericClientConstructor({
      nope: {
        path: "/grpc.health.v1.Health/Nope",
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    }, "Unknown");
    const unknown = new Unknown(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const e1 = await unary(unknown, "nope", Buffer.alloc(0)).then(() => undefined, (e) => e);
      assert.equal(e1.code, grpc.status.UNIMPLEMENTED);
      const e2 = await unary(client, "list", {}).then(() => undefined, (e) => e);
      assert.equal(e2.code, grpc.status.UNIMPLEMENTED);
      assert.match(e2.details, /grpc\.health\.v1\.Health\.List is not implemented/);
      // the connection still serves
      assert.equal(
        (await unary(client, "check", { service: "" })).status,
        HealthCheckResponse_ServingStatus.SERVING,
      );
    } finally {
      unknown.close();
      client.close();
    }
  });
});

Deno.test("grpc-js deadline: DEADLINE_EXCEEDED and the impl's signal aborts", async () => {
  await withServer(async ({ port, probe }) => {
    const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      // Connect first, so the deadline is spent in the handler and not on a loaded machine's connect.
      assert.equal(
        (await unary(client, "check", { service: "" })).status,
        HealthCheckResponse_ServingStatus.SERVING,
      );
      const t0 = Date.now();
      const err = await unary(client, "check", { service: "slow" }, { deadline: Date.now() + 1000 }).then(
        () => undefined,
        (e) => e,
      );
      assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
      // "slow" never answers: the deadline ended it, well before the test's own upper bound.
      assert.ok(Date.now() - t0 < 15_000, `the call took ${Date.now() - t0} ms`);
      assert.equal(probe.started, 1, "the call reached the handler");
      await waitUntil(() => probe.aborted.length > 0, { what: "the impl's signal to abort" });
      assert.equal(probe.aborted.length, 1);
    } finally {
      client.close();
    }
  });
});

Deno.test("grpc-js cancel aborts the impl's signal", async () => {
  await withServer(async ({ port, probe }) => {
    const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const call = client.check({ service: "slow" }, () => {});
      await waitUntil(() => probe.started === 1, { what: "the call to reach the handler" });
      call.cancel();
      await waitUntil(() => probe.aborted.length > 0, { what: "the impl's signal to abort" });
      assert.equal(probe.aborted.length, 1);
      assert.match(String((probe.aborted[0] as Error).message), /cancel/i);
    } finally {
      client.close();
    }
  });
});

Deno.test("grpc-js server streaming: Watch and a large ByteStream Read", async () => {
  await withServer(async ({ port, blobs }) => {
    const health = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const bs = new ByteStreamClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const statuses: number[] = [];
      await new Promise<void>((resolve, reject) => {
        const call = health.watch({ service: "" });
        call.on("data", (m: { status: number }) => statuses.push(m.status));
        call.on("error", reject);
        call.on("end", resolve);
      });
      assert.deepEqual(statuses, [1, 2, 1]);

      const blob = new Uint8Array(5 * 1024 * 1024 + 17).map((_, i) => i % 251);
      blobs.set("blobs/big", blob);
      let received = 0;
      let ok = true;
      await new Promise<void>((resolve, reject) => {
        const call = bs.read({ resourceName: "blobs/big" });
        call.on("data", (m: { data: Uint8Array }) => {
          for (let i = 0; i < m.data.length; i += 4099) if (m.data[i] !== blob[received + i]) ok = false;
          received += m.data.length;
        });
        call.on("error", reject);
        call.on("end", resolve);
      });
      assert.equal(received, blob.length);
      assert.ok(ok);

      const notFound = await new Promise<grpc.ServiceError>((resolve) => {
        const call = bs.read({ resourceName: "blobs/none" });
        call.on("data", () => {});
        call.on("error", resolve);
      });
      assert.equal(notFound.code, grpc.status.NOT_FOUND);
    } finally {
      health.close();
      bs.close();
    }
  });
});

Deno.test("grpc-js client streaming: ByteStream Write of many chunks", async () => {
  await withServer(async ({ port, blobs }) => {
    const bs = new ByteStreamClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const chunk = new Uint8Array(100_000).fill(7);
      const res = await new Promise<{ committedSize: bigint }>((resolve, reject) => {
        const call = bs.write((err: Error | null, r: { committedSize: bigint }) =>
          err ? reject(err) : resolve(r)
        );
        for (let i = 0; i < 40; i++) {
          call.write({
            resourceName: "uploads/x",
            writeOffset: BigInt(i * chunk.length),
            data: chunk,
            finishWrite: i === 39,
          });
        }
        call.end();
      });
      assert.equal(res.committedSize, 4_000_000n);
      assert.equal(blobs.get("uploads/x")?.length, 4_000_000);

      const bad = await new Promise<grpc.ServiceError>((resolve, reject) => {
        const call = bs.write((err: grpc.ServiceError | null) =>
          err ? resolve(err) : reject(new Error("no error"))
        );
        call.write({ resourceName: "uploads/y", writeOffset: 5n, data: chunk });
        call.end();
      });
      assert.equal(bad.code, grpc.status.INVALID_ARGUMENT);
    } finally {
      bs.close();
    }
  });
});

Deno.test("grpc-js gzip both ways when the listener enables it", async () => {
  await withServer(async ({ port, blobs }) => {
    const options = { "grpc.default_compression_algorithm": 2 };
    const bs = new ByteStreamClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
    const health = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
    try {
      assert.equal((await unary(health, "check", { service: "" })).status, 1);
      const chunk = new Uint8Array(200_000).fill(3);
      const res = await new Promise<{ committedSize: bigint }>((resolve, reject) => {
        const call = bs.write((err: Error | null, r: { committedSize: bigint }) =>
          err ? reject(err) : resolve(r)
        );
        call.write({ resourceName: "z", writeOffset: 0n, data: chunk });
        call.write({ resourceName: "z", writeOffset: 200_000n, data: chunk, finishWrite: true });
        call.end();
      });
      assert.equal(res.committedSize, 400_000n);
      let got = 0;
      await new Promise<void>((resolve, reject) => {
        const call = bs.read({ resourceName: "z" });
        call.on("data", (m: { data: Uint8Array }) => got += m.data.length);
        call.on("error", reject);
        call.on("end", resolve);
      });
      assert.equal(got, 400_000);
      assert.deepEqual(blobs.get("z"), new Uint8Array(400_000).fill(3));
    } finally {
      bs.close();
      health.close();
    }
  }, { compression: { send_compression_algorithm: "gzip", accepted_compression_algorithms: ["gzip"] } });
});

Deno.test("grpc-js gzip requests are refused when the listener does not accept gzip", async () => {
  await withServer(async ({ port }) => {
    const options = { "grpc.default_compression_algorithm": 2 };
    const health = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
    try {
      const err = await unary(health, "check", { service: "" }).then(() => undefined, (e) => e);
      assert.equal(err.code, grpc.status.UNIMPLEMENTED);
    } finally {
      health.close();
    }
  });
});
