/**
 * The store registry: maps each config kind (`memory`, `filesystem`, `verify`, …) to a typed factory
 * (`StoreFactory<"memory">` gets the `memory` body as the config schema types it) that builds a
 * {@linkcode StoreDriver}. Which fields a kind has comes from the config schema (`STORE_KIND_TABLE` of
 * `src/config/nativelink_schema.ts`): the registry refuses unknown and not-implemented fields before the
 * factory runs, so factories hold no field lists. Wrappers build their nested specs through
 * `ctx.build(spec, field)`; `ref_store` resolves names later, in `init(lookup)`.
 *
 * @example
 * ```ts
 * import { createStoreRegistry } from "./registry.ts";
 * import { createNoopStore } from "./noop_store.ts";
 * const registry = createStoreRegistry();
 * registry.register("null", (_fields, _ctx) => createNoopStore());
 * const store = registry.build("cas", { memory: { eviction_policy: { max_bytes: 1e9 } } });
 * ```
 * @module
 */
import { CairnError, Code } from "../util/error.ts";
import { STORE_KINDS as STORE_SCHEMA } from "../config/nativelink_schema.ts";
import type { Field } from "../config/schema.ts";
import type { StoreKind, StoreKinds } from "../config/types.ts";
import type { StoreDriver } from "./types.ts";
import { memoryStoreFactory } from "./memory_store.ts";
import { filesystemStoreFactory } from "./filesystem_store.ts";
import { noopStoreFactory } from "./noop_store.ts";
import { refStoreFactory } from "./ref_store.ts";
import { verifyStoreFactory } from "./verify_store.ts";
import { compressionStoreFactory } from "./compression_store.ts";
import { fastSlowStoreFactory } from "./fast_slow_store.ts";
import { sizePartitioningStoreFactory } from "./size_partitioning_store.ts";
import { shardStoreFactory } from "./shard_store.ts";
import { existenceCacheStoreFactory } from "./existence_cache_store.ts";
import { dedupStoreFactory } from "./dedup_store.ts";
import { completenessCheckingStoreFactory } from "./completeness_checking_store.ts";
import { grpcStoreFactory } from "./grpc_store.ts";
import { redisStoreFactory } from "./redis_store.ts";
import { s3StoreFactory } from "./s3_store.ts";
import type { IoThread } from "../util/io_thread.ts";

/** A store spec as the config module hands it over: `{ <kind>: { ...snake_case fields } }`. */
export type StoreSpec = { readonly [kind: string]: unknown };

/** The fields object of one spec (`spec[kind]`). */
export type SpecFields = { readonly [field: string]: unknown };

/** Options every factory receives (clock injection for tests). */
export interface StoreBuildOptions {
  /** Milliseconds clock used for eviction ages (default `Date.now`). */
  readonly now?: () => number;
  /** The process's shared I/O thread, for stores that write files off the main thread (the caller stops it). */
  readonly ioThread?: IoThread;
  /** Called for every store built, nested ones included, with its dotted path (`verify.backend.filesystem`). */
  readonly onBuilt?: (storeName: string, path: string, store: StoreDriver) => void;
}

/** What a factory gets besides its fields: where it is, how to build nested specs, field readers. */
export interface StoreBuildContext {
  /** Name of the top-level store being built (for messages). */
  readonly storeName: string;
  /** The kind being built. */
  readonly kind: string;
  /** Dotted location of this spec inside the top-level spec (`""` at the top, e.g. `fast_slow.slow`). */
  readonly path: string;
  /** Build options passed down to every nested store. */
  readonly options: StoreBuildOptions;
  /** Builds a nested store spec found in this spec's `field` (e.g. `"backend"`, `"stores[0].store"`). */
  build(spec: unknown, field: string): StoreDriver;
  /** A config error: `Cannot open store "NAME": <path>: message` (INVALID_ARGUMENT). */
  error(message: string): CairnError;
  /** A required (no default) or defaulted string field. */
  string(fields: SpecFields, field: string, fallback?: string): string;
  /** A required (no default) or defaulted non-negative number field. */
  number(fields: SpecFields, field: string, fallback?: number): number;
  /** A required (no default) or defaulted boolean field. */
  boolean(fields: SpecFields, field: string, fallback?: boolean): boolean;
  /** An optional object field (undefined when absent). */
  object(fields: SpecFields, field: string): SpecFields | undefined;
}

/**
 * Builds one kind of store from its body (`spec` is `StoreKinds[K]`: the type the config schema gives the
 * kind; a store built straight from code may still be malformed, so factories check values through `ctx`).
 */
export type StoreFactory<K extends StoreKind = StoreKind> = (
  spec: StoreKinds[K],
  ctx: StoreBuildContext,
) => StoreDriver;

/** A factory of a kind the config schema does not know (plug-ins, tests): it gets the raw fields. */
export type PluginStoreFactory = (fields: SpecFields, ctx: StoreBuildContext) => StoreDriver;

/** One factory for every store kind the config schema types. */
export type StoreFactories = { readonly [K in StoreKind]: StoreFactory<K> };

/** Every store kind of NativeLink's config that Cairn knows by name (from the config schema, old names too). */
export const STORE_KINDS: readonly string[] = [
  ...Object.keys(STORE_SCHEMA.variants),
  ...Object.keys(STORE_SCHEMA.legacy ?? {}),
];

/** A table of store factories. */
export interface StoreRegistry {
  /** Adds or replaces the factory of a kind (a kind of the config schema gets its typed body). */
  register<K extends StoreKind>(kind: K, factory: StoreFactory<K>): void;
  register(kind: string, factory: PluginStoreFactory): void;
  /** Kinds that have a factory. */
  kinds(): string[];
  /** Builds a top-level store `name` from its spec (nested stores are built recursively). */
  build(name: string, spec: unknown, options?: StoreBuildOptions): StoreDriver;
}

/** The built-in factories: the type makes a kind added to the config schema without a factory an error. */
const BUILT_IN: StoreFactories = {
  memory: memoryStoreFactory,
  filesystem: filesystemStoreFactory,
  noop: noopStoreFactory,
  ref_store: refStoreFactory,
  verify: verifyStoreFactory,
  compression: compressionStoreFactory,
  fast_slow: fastSlowStoreFactory,
  size_partitioning: sizePartitioningStoreFactory,
  shard: shardStoreFactory,
  existence_cache: existenceCacheStoreFactory,
  dedup: dedupStoreFactory,
  completeness_checking: completenessCheckingStoreFactory,
  grpc: grpcStoreFactory,
  redis_store: redisStoreFactory,
  experimental_cloud_object_store: s3StoreFactory,
};

/** Kind → factory; the factory's typed body is only a promise of the schema, so the table holds them erased. */
type AnyFactory = (fields: SpecFields, ctx: StoreBuildContext) => StoreDriver;

const defaultFactories = new Map<string, AnyFactory>([
  ...Object.entries(BUILT_IN) as [string, AnyFactory][],
  // Before NativeLink 0.6 the S3 store had its own kind.
  ["experimental_s3_store", s3StoreFactory as AnyFactory],
]);

/**
 * Adds a kind to the default table used by every later {@linkcode createStoreRegistry}.
 * Prefer adding built-in kinds to the config schema and the table in this file; this is for plug-ins and tests.
 */
export function registerStoreKind<K extends StoreKind>(kind: K, factory: StoreFactory<K>): void;
export function registerStoreKind(kind: string, factory: PluginStoreFactory): void;
export function registerStoreKind(kind: string, factory: AnyFactory): void {
  defaultFactories.set(kind, factory);
}

/** The schema's field table of a kind (old kind names map to their new kind); `undefined` for plug-in kinds. */
function schemaFields(kind: string): Readonly<Record<string, Field>> | undefined {
  const canonical = kind in STORE_SCHEMA.variants ? kind : STORE_SCHEMA.legacy?.[kind]?.({})[0];
  const node = canonical === undefined ? undefined : STORE_SCHEMA.variants[canonical];
  return node && node.t === "object" ? node.fields : undefined;
}

/**
 * Refuses fields the config schema does not give `kind` (a typo would otherwise be silently ignored), and
 * fields it marks as not implemented by Cairn.
 */
function checkSchemaFields(kind: string, fields: SpecFields, fail: (message: string) => CairnError): void {
  const table = schemaFields(kind);
  if (!table) return;
  const known = Object.keys(table).filter((k) => table[k]!.node.t !== "unsupported");
  for (const k of Object.keys(fields)) {
    if (table[k]?.node.t === "unsupported") throw fail(`${kind} field "${k}" is not supported by Cairn yet`);
    if (!known.includes(k)) {
      throw fail(
        `unknown ${kind} field "${k}"; valid fields are ${known.length ? known.join(", ") : "(none)"}`,
      );
    }
  }
}

/** A registry holding every built-in kind (plus kinds added with {@linkcode registerStoreKind}). */
export function createStoreRegistry(): StoreRegistry {
  return new Registry(new Map(defaultFactories));
}

class Registry implements StoreRegistry {
  #factories: Map<string, AnyFactory>;

  constructor(factories: Map<string, AnyFactory>) {
    this.#factories = factories;
  }

  register<K extends StoreKind>(kind: K, factory: StoreFactory<K>): void;
  register(kind: string, factory: PluginStoreFactory): void;
  register(kind: string, factory: AnyFactory): void {
    this.#factories.set(kind, factory);
  }

  kinds(): string[] {
    return [...this.#factories.keys()];
  }

  build(name: string, spec: unknown, options: StoreBuildOptions = {}): StoreDriver {
    return this.#build(name, spec, "", options);
  }

  #build(storeName: string, spec: unknown, path: string, options: StoreBuildOptions): StoreDriver {
    const fail = (message: string) =>
      new CairnError(
        Code.InvalidArgument,
        `Cannot open store "${storeName}": ${path ? `${path}: ` : ""}${message}`,
      );
    if (spec === null || typeof spec !== "object" || Array.isArray(spec)) {
      throw fail(`a store spec must be an object like { memory: {…} }, got ${describe(spec)}`);
    }
    const kinds = Object.keys(spec);
    if (kinds.length !== 1) {
      throw fail(
        kinds.length === 0
          ? `the store spec is empty; expected one of ${this.#validKinds()}`
          : `a store spec names exactly one kind, got ${kinds.join(", ")}`,
      );
    }
    const kind = kinds[0]!;
    const fields = (spec as Record<string, unknown>)[kind] ?? {};
    const factory = this.#factories.get(kind);
    if (!factory) {
      if (STORE_KINDS.includes(kind)) {
        throw new CairnError(
          Code.Unimplemented,
          `Cannot open store "${storeName}": ${path ? `${path}: ` : ""}${kind} is not yet supported`,
        );
      }
      throw fail(`unknown store kind "${kind}"; valid kinds are ${this.#validKinds()}`);
    }
    if (typeof fields !== "object" || fields === null || Array.isArray(fields)) {
      throw fail(`${kind} settings must be an object, got ${describe(fields)}`);
    }
    checkSchemaFields(kind, fields as SpecFields, fail);
    const here = path ? `${path}.${kind}` : kind;
    const field = (f: string) => f;
    const ctx: StoreBuildContext = {
      storeName,
      kind,
      path,
      options,
      build: (nested, f) => this.#build(storeName, nested, `${here}.${f}`, options),
      error: fail,
      string(obj, f, fallback) {
        const v = obj[f];
        if (v === undefined || v === null) {
          if (fallback !== undefined) return fallback;
          throw fail(`${field(f)} is missing`);
        }
        if (typeof v !== "string") throw fail(`${field(f)} must be a string, got ${describe(v)}`);
        return v;
      },
      number(obj, f, fallback) {
        const v = obj[f];
        if (v === undefined || v === null) {
          if (fallback !== undefined) return fallback;
          throw fail(`${field(f)} is missing`);
        }
        if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
          throw fail(`${field(f)} must be a non-negative number, got ${describe(v)}`);
        }
        return v;
      },
      boolean(obj, f, fallback) {
        const v = obj[f];
        if (v === undefined || v === null) {
          if (fallback !== undefined) return fallback;
          throw fail(`${field(f)} is missing`);
        }
        if (typeof v !== "boolean") throw fail(`${field(f)} must be true or false, got ${describe(v)}`);
        return v;
      },
      object(obj, f) {
        const v = obj[f];
        if (v === undefined || v === null) return undefined;
        if (typeof v !== "object" || Array.isArray(v)) {
          throw fail(`${field(f)} must be an object, got ${describe(v)}`);
        }
        return v as SpecFields;
      },
    };
    const store = factory(fields as SpecFields, ctx);
    options.onBuilt?.(storeName, here, store);
    return store;
  }

  #validKinds(): string {
    return [...this.#factories.keys()].join(", ");
  }
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "object") return "an object";
  return String(v);
}
