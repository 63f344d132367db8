/**
 * A minimal Remote Asset API (`build.bazel.remote.asset.v1` Fetch and Push): `Push*` records which blob or
 * directory a URI (with its qualifiers) names, `Fetch*` answers from those records. Cairn never downloads
 * anything itself: an asset nobody pushed is NOT_FOUND, and Bazel's remote downloader then falls back to
 * fetching directly.
 *
 * Records live in the configured `push_store` / `fetch_store` under the string key
 * `remote-asset/{blob|directory}/{sha256 of uri + sorted qualifiers}` holding `hash-size`.
 *
 * @example
 * ```ts
 * import { createFetchService, createPushService } from "./remote_asset_service.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const store = createMemoryStore();
 * const push = createPushService({ instances: new Map([["", { store }]]) });
 * const fetch = createFetchService({ instances: new Map([["", { store }]]) });
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Fetch, Push, Qualifier } from "../gen/build/bazel/remote/asset/v1/remote_asset_pb.ts";
import { DigestFunction_Value } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { type Digest, formatDigest, fromProto, parseDigest } from "../digest/digest.ts";
import { getBytes, putBytes } from "../store/helpers.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code, quoteClient } from "../util/error.ts";
import { checkDigestFunction } from "./digest_function.ts";
import { createInstances } from "./instances.ts";
import { okStatus } from "./rpc_status.ts";
import { toProto } from "./cas_service.ts";

/** One instance of Fetch or Push. */
export interface AssetInstance {
  readonly store: StoreDriver;
  /** Push only: refuse pushes. */
  readonly readOnly?: boolean;
}

/** Options of the Remote Asset factories. */
export interface RemoteAssetOptions {
  readonly instances: ReadonlyMap<string, AssetInstance>;
}

type AssetKind = "blob" | "directory";

/** The store key of one asset record. */
export function assetKey(kind: AssetKind, uri: string, qualifiers: readonly Qualifier[]): string {
  const q = [...qualifiers].map((x) => `${x.name}=${x.value}`).sort().join("\n");
  return `remote-asset/${kind}/${createHash("sha256").update(`${uri}\n${q}`).digest("hex")}`;
}

async function lookup(
  store: StoreDriver,
  kind: AssetKind,
  uris: readonly string[],
  qualifiers: readonly Qualifier[],
): Promise<{ uri: string; digest: Digest }> {
  if (uris.length === 0) throw new CairnError(Code.InvalidArgument, "Fetch needs at least one uri");
  for (const uri of uris) {
    try {
      const bytes = await getBytes(store, assetKey(kind, uri, qualifiers), { maxSize: 256 });
      return { uri, digest: parseDigest(new TextDecoder().decode(bytes)) };
    } catch (err) {
      if (CairnError.from(err).code !== Code.NotFound) throw err;
    }
  }
  throw new CairnError(Code.NotFound, `No ${kind} was pushed for ${uris.join(", ")}`);
}

/** Builds the Fetch implementation. */
export function createFetchService(options: RemoteAssetOptions): Partial<ServiceImpl<typeof Fetch>> {
  const instances = createInstances("Fetch", options.instances);
  return {
    async fetchBlob(req) {
      checkDigestFunction(req.digestFunction);
      const { store } = instances.get(req.instanceName);
      const { uri, digest } = await lookup(store, "blob", req.uris, req.qualifiers);
      return {
        status: okStatus(),
        uri,
        qualifiers: req.qualifiers,
        blobDigest: toProto(digest),
        digestFunction: DigestFunction_Value.SHA256,
      };
    },
    async fetchDirectory(req) {
      checkDigestFunction(req.digestFunction);
      const { store } = instances.get(req.instanceName);
      const { uri, digest } = await lookup(store, "directory", req.uris, req.qualifiers);
      return {
        status: okStatus(),
        uri,
        qualifiers: req.qualifiers,
        rootDirectoryDigest: toProto(digest),
        digestFunction: DigestFunction_Value.SHA256,
      };
    },
  };
}

/** Builds the Push implementation. */
export function createPushService(options: RemoteAssetOptions): Partial<ServiceImpl<typeof Push>> {
  const instances = createInstances("Push", options.instances);
  const record = async (
    instanceName: string,
    kind: AssetKind,
    uris: readonly string[],
    qualifiers: readonly Qualifier[],
    digest: Digest,
  ) => {
    const inst = instances.get(instanceName);
    if (inst.readOnly) {
      throw new CairnError(
        Code.PermissionDenied,
        `Push of instance ${quoteClient(instanceName)} is read-only`,
      );
    }
    if (uris.length === 0) throw new CairnError(Code.InvalidArgument, "Push needs at least one uri");
    const value = new TextEncoder().encode(formatDigest(digest));
    for (const uri of uris) await putBytes(inst.store, assetKey(kind, uri, qualifiers), value);
  };
  return {
    async pushBlob(req) {
      const fn = checkDigestFunction(req.digestFunction);
      await record(req.instanceName, "blob", req.uris, req.qualifiers, fromProto(req.blobDigest, fn));
      return {};
    },
    async pushDirectory(req) {
      const fn = checkDigestFunction(req.digestFunction);
      await record(
        req.instanceName,
        "directory",
        req.uris,
        req.qualifiers,
        fromProto(req.rootDirectoryDigest, fn),
      );
      return {};
    },
  };
}
