/**
 * Test support: serves a ServiceImpl through connect's in-memory router transport (real protobuf
 * encoding, real streaming) and returns a typed client. Errors are mapped like the real transport does
 * (CairnError → status code).
 *
 * @example
 * ```ts
 * import { serviceClient } from "./testing.ts";
 * import { createCasService } from "./cas_service.ts";
 * import { ContentAddressableStorage } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const instances = new Map([["", { casStore: createMemoryStore() }]]);
 * const cas = serviceClient(ContentAddressableStorage, createCasService({ instances }));
 * await cas.findMissingBlobs({ blobDigests: [] });
 * ```
 * @module
 */
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import type { ServiceImpl } from "@connectrpc/connect";
import { toConnectError } from "../transport/grpc_status.ts";

const mapErrors: Interceptor = (next) => async (req) => {
  let res;
  try {
    res = await next(req);
  } catch (err) {
    throw toConnectError(err);
  }
  if (!res.stream) return res;
  const inner = res.message;
  return {
    ...res,
    message: (async function* () {
      try {
        yield* inner;
      } catch (err) {
        throw toConnectError(err);
      }
    })(),
  };
};

/** A client of `service` served in memory by `impl`. */
export function serviceClient<S extends DescService>(
  service: S,
  // deno-lint-ignore no-explicit-any
  impl: Partial<ServiceImpl<any>>,
): Client<S> {
  const transport = createRouterTransport((router) => router.service(service, impl), {
    router: { interceptors: [mapErrors] },
  });
  return createClient(service, transport);
}

/** Awaits a promise that must reject with a connect error of `code`; returns its message. */
export async function rejectsWithCode(promise: Promise<unknown>, code: number): Promise<string> {
  try {
    await promise;
  } catch (err) {
    const c = (err as { code?: number }).code;
    if (c !== code) {
      throw new Error(`Expected code ${code}, got ${c}: ${(err as Error).message}`, { cause: err });
    }
    return (err as Error).message;
  }
  throw new Error(`Expected a rejection with code ${code}, but it resolved`);
}
