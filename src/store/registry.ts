/**
 * The store registry: maps each config kind (`memory`, `filesystem`, `verify`, …) to a factory that
 * builds a {@linkcode StoreDriver} from its spec. Wrappers build their nested specs through
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

/** Builds one kind of store from its fields. */
export type StoreFactory = (fields: SpecFields, ctx: StoreBuildContext) => StoreDriver;

/** Every store kind of NativeLink's config that Cairn knows by name. */
export const STORE_KINDS: readonly string[] = [
  "memory",
  "filesystem",
  "noop",
  "ref_store",
  "verify",
  "compression",
  "dedup",
  "fast_slow",
  "size_partitioning",
  "shard",
  "existence_cache",
  "completeness_checking",
  "redis_store",
  "experimental_s3_store",
  "experimental_cloud_object_store",
  "grpc",
];

/** A table of store factories. */
export interface StoreRegistry {
  /** Adds or replaces the factory of a kind. */
  register(kind: string, factory: StoreFactory): void;
  /** Kinds that have a factory. */
  kinds(): string[];
  /** Builds a top-level store `name` from its spec (nested stores are built recursively). */
  build(name: string, spec: unknown, options?: StoreBuildOptions): StoreDriver;
}

const defaultFactories = new Map<string, StoreFactory>([
  ["memory", memoryStoreFactory],
  ["filesystem", filesystemStoreFactory],
  ["noop", noopStoreFactory],
  ["ref_store", refStoreFactory],
  ["verify", verifyStoreFactory],
  ["compression", compressionStoreFactory],
  ["fast_slow", fastSlowStoreFactory],
  ["size_partitioning", sizePartitioningStoreFactory],
  ["shard", shardStoreFactory],
  ["existence_cache", existenceCacheStoreFactory],
  ["dedup", dedupStoreFactory],
  ["completeness_checking", completenessCheckingStoreFactory],
  ["grpc", grpcStoreFactory],
  ["redis_store", redisStoreFactory],
  ["experimental_cloud_object_store", s3StoreFactory],
  ["experimental_s3_store", s3StoreFactory],
]);

/**
 * Adds a kind to the default table used by every later {@linkcode createStoreRegistry}.
 * Prefer adding built-in kinds to the table in this file; this is for plug-ins and tests.
 */
export function registerStoreKind(kind: string, factory: StoreFactory): void {
  defaultFactories.set(kind, factory);
}

/** A registry holding every built-in kind (plus kinds added with {@linkcode registerStoreKind}). */
export function createStoreRegistry(): StoreRegistry {
  return new Registry(new Map(defaultFactories));
}

class Registry implements StoreRegistry {
  #factories: Map<string, StoreFactory>;

  constructor(factories: Map<string, StoreFactory>) {
    this.#factories = factories;
  }

  register(kind: string, factory: StoreFactory): void {
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
