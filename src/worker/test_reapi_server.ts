/**
 * A small real gRPC server for tests of the worker and the `grpc` store: an in-memory CAS
 * (FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs, ByteStream Read/Write), an in-memory action
 * cache, and optionally a WorkerApi implementation supplied by the test. Served by connect-node's
 * `connectNodeAdapter` on `node:http2` (plain HTTP/2), so clients speak real gRPC to it. It counts calls
 * per method and uploads per digest so tests can assert deduplication.
 *
 * Test fixture only: production code uses the services in `src/service/`.
 *
 * @example
 * ```ts
 * import { startTestReapiServer } from "./test_reapi_server.ts";
 * const server = await startTestReapiServer();
 * console.log(server.address); // grpc://127.0.0.1:PORT
 * await server.close();
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Code as ConnectCode, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  ActionCache,
  type ActionResult,
  ContentAddressableStorage,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream } from "../gen/google/bytestream/bytestream_pb.ts";
import { WorkerApi } from "../gen/cairn/worker/v1/worker_api_pb.ts";

/** A running test server. */
export interface TestReapiServer {
  /** `grpc://127.0.0.1:PORT`. */
  readonly address: string;
  readonly port: number;
  /** Blobs by `hash-size`. */
  readonly blobs: Map<string, Uint8Array>;
  /** Action results by `hash-size` of the action digest. */
  readonly actionResults: Map<string, ActionResult>;
  /** Calls per method name (`FindMissingBlobs`, `Write`, `BatchUpdateBlobs`, …). */
  readonly calls: Map<string, number>;
  /** Completed uploads per `hash-size` (ByteStream Write or BatchUpdateBlobs). */
  readonly uploads: Map<string, number>;
  /** Stores a blob directly; returns its `hash-size`. */
  put(bytes: Uint8Array): { hash: string; size: number };
  close(): Promise<void>;
}

/** Starts the server on a free loopback port. */
export async function startTestReapiServer(
  options: {
    workerApi?: Partial<ServiceImpl<typeof WorkerApi>>;
    /** Called per upload (Write, BatchUpdateBlobs); true → the upload fails with UNAVAILABLE. */
    failWrites?: () => boolean;
  } = {},
): Promise<TestReapiServer> {
  const blobs = new Map<string, Uint8Array>();
  const actionResults = new Map<string, ActionResult>();
  const calls = new Map<string, number>();
  const uploads = new Map<string, number>();
  const count = (name: string) => calls.set(name, (calls.get(name) ?? 0) + 1);
  const uploaded = (key: string) => uploads.set(key, (uploads.get(key) ?? 0) + 1);
  const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

  const routes = (router: ConnectRouter) => {
    router.service(ContentAddressableStorage, {
      findMissingBlobs(req) {
        count("FindMissingBlobs");
        return {
          missingBlobDigests: req.blobDigests.filter((d) =>
            d.sizeBytes > 0n && !blobs.has(`${d.hash}-${d.sizeBytes}`)
          ),
        };
      },
      batchUpdateBlobs(req) {
        count("BatchUpdateBlobs");
        if (options.failWrites?.()) throw new ConnectError("injected failure", ConnectCode.Unavailable);
        return {
          responses: req.requests.map((r) => {
            const key = `${r.digest?.hash}-${r.digest?.sizeBytes}`;
            if (sha(r.data) !== r.digest?.hash || BigInt(r.data.byteLength) !== r.digest.sizeBytes) {
              return {
                digest: r.digest,
                status: { code: ConnectCode.InvalidArgument, message: "digest mismatch" },
              };
            }
            blobs.set(key, r.data);
            uploaded(key);
            return { digest: r.digest, status: { code: 0, message: "" } };
          }),
        };
      },
      batchReadBlobs(req) {
        count("BatchReadBlobs");
        return {
          responses: req.digests.map((d) => {
            const data = blobs.get(`${d.hash}-${d.sizeBytes}`);
            return data
              ? { digest: d, data, status: { code: 0, message: "" } }
              : { digest: d, status: { code: ConnectCode.NotFound, message: "not found" } };
          }),
        };
      },
    });
    router.service(ByteStream, {
      async *read(req) {
        count("Read");
        const m = /(?:^|\/)blobs\/([0-9a-f]+)\/(\d+)$/.exec(req.resourceName);
        if (!m) throw new ConnectError(`bad resource ${req.resourceName}`, ConnectCode.InvalidArgument);
        const data = blobs.get(`${m[1]}-${m[2]}`);
        if (!data) throw new ConnectError(`${m[1]}-${m[2]} not found`, ConnectCode.NotFound);
        const offset = Number(req.readOffset);
        if (offset > data.byteLength) throw new ConnectError("offset out of range", ConnectCode.OutOfRange);
        const end = req.readLimit > 0n
          ? Math.min(data.byteLength, offset + Number(req.readLimit))
          : data.byteLength;
        for (let pos = offset; pos < end; pos += 64 * 1024) {
          yield { data: data.subarray(pos, Math.min(end, pos + 64 * 1024)) };
        }
      },
      async write(requests) {
        count("Write");
        let resource = "";
        const chunks: Uint8Array[] = [];
        let total = 0;
        let finished = false;
        for await (const r of requests) {
          if (r.resourceName) resource ||= r.resourceName;
          if (BigInt(total) !== r.writeOffset) {
            throw new ConnectError("bad offset", ConnectCode.InvalidArgument);
          }
          chunks.push(r.data);
          total += r.data.byteLength;
          if (r.finishWrite) {
            finished = true;
            break;
          }
        }
        if (options.failWrites?.()) throw new ConnectError("injected failure", ConnectCode.Unavailable);
        const m = /(?:^|\/)uploads\/[^/]+\/blobs\/([0-9a-f]+)\/(\d+)$/.exec(resource);
        if (!m) throw new ConnectError(`bad resource ${resource}`, ConnectCode.InvalidArgument);
        if (!finished) throw new ConnectError("upload not finished", ConnectCode.InvalidArgument);
        const data = new Uint8Array(total);
        let pos = 0;
        for (const c of chunks) {
          data.set(c, pos);
          pos += c.byteLength;
        }
        if (sha(data) !== m[1] || String(total) !== m[2]) {
          throw new ConnectError("digest mismatch", ConnectCode.InvalidArgument);
        }
        blobs.set(`${m[1]}-${m[2]}`, data);
        uploaded(`${m[1]}-${m[2]}`);
        return { committedSize: BigInt(total) };
      },
    });
    router.service(ActionCache, {
      getActionResult(req) {
        count("GetActionResult");
        const r = actionResults.get(`${req.actionDigest?.hash}-${req.actionDigest?.sizeBytes}`);
        if (!r) throw new ConnectError("not found", ConnectCode.NotFound);
        return r;
      },
      updateActionResult(req) {
        count("UpdateActionResult");
        const r = req.actionResult!;
        actionResults.set(`${req.actionDigest?.hash}-${req.actionDigest?.sizeBytes}`, r);
        return r;
      },
    });
    if (options.workerApi) router.service(WorkerApi, options.workerApi);
  };

  const server = http2.createServer(connectNodeAdapter({ routes }));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    address: `grpc://127.0.0.1:${port}`,
    port,
    blobs,
    actionResults,
    calls,
    uploads,
    put(bytes) {
      const d = { hash: sha(bytes), size: bytes.byteLength };
      blobs.set(`${d.hash}-${d.size}`, bytes);
      return d;
    },
    close() {
      return new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      });
    },
  };
}
