/**
 * The wire: one listener serving gRPC (thin HTTP/2 path), Connect, gRPC-Web and plain HTTP routes, plus a
 * gRPC client transport helper.
 *
 * @example
 * ```ts
 * import { createCairnServer, createGrpcClientTransport } from "./mod.ts";
 * import { Health } from "../gen/grpc/health/v1/health_pb.ts";
 * const server = createCairnServer({
 *   listener: { socket_address: "127.0.0.1:0" },
 *   bindings: [{ service: Health, impl: { check: () => ({ status: 1 }) } }],
 * });
 * const { port } = await server.listen();
 * const transport = createGrpcClientTransport(`grpc://127.0.0.1:${port}`);
 * ```
 * @module
 */
export { bindService } from "./bind_service.ts";
export { type CairnServer, type CairnServerOptions, createCairnServer } from "./server.ts";
export {
  type ClientTlsConfig,
  createGrpcClientTransport,
  type GrpcClientOptions,
  toBaseUrl,
} from "./grpc_client.ts";
export { registerErrorDetailTypes, statusOf, toConnectError } from "./grpc_status.ts";
export { type BoundAddress, parseSocketAddress } from "./listener.ts";
export { decodeRequest } from "../util/proto_wire.ts";
export { kPeer, type PeerInfo } from "./peer.ts";
export type {
  EncodedServerStream,
  EncodedUnary,
  HttpListenerConfig,
  HttpRoute,
  ListenerAdvancedHttpConfig,
  ListenerCompressionConfig,
  ListenerTlsConfig,
  ServiceBinding,
  TransportLog,
} from "./types.ts";
