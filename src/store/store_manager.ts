/**
 * The store manager: builds every named top-level store of the config, initialises each once (so
 * `ref_store` can resolve names), answers lookups by name, checks health and closes them all.
 *
 * @example
 * ```ts
 * import { createStoreManager } from "./store_manager.ts";
 * const stores = await createStoreManager({
 *   CAS: { memory: {} },
 *   AC: { ref_store: { name: "CAS" } },
 * });
 * const ac = stores.get("AC");
 * console.log(await stores.check()); // [{ name: "CAS", kind: "memory", ok: true }, …]
 * await stores.close();
 * ```
 * @module
 */
import { EMPTY_DIGEST } from "../digest/digest.ts";
import { CairnError, Code } from "../util/error.ts";
import { createStoreRegistry, type StoreBuildOptions, type StoreRegistry } from "./registry.ts";
import type { StoreDriver, StoreLookup } from "./types.ts";

/**
 * Named store specs: a map `{ NAME: spec }`, a list `[{ name, spec }]`, or NativeLink's list form
 * `[{ name, <kind>: {...} }]`.
 */
export type StoresConfig =
  | { readonly [name: string]: unknown }
  | readonly ({ readonly name: string; readonly spec: unknown } | {
    readonly name: string;
    readonly [kind: string]: unknown;
  })[];

/** Health of one store, from {@linkcode StoreManager.check}. */
export interface StoreHealth {
  readonly name: string;
  readonly kind: string;
  readonly ok: boolean;
  /** Why it is not ok. */
  readonly error?: string;
  /** How long the probe took, in milliseconds. */
  readonly ms: number;
}

/** Options of {@linkcode createStoreManager}. */
export interface StoreManagerOptions {
  /** The registry to build with (default: {@linkcode createStoreRegistry}). */
  readonly registry?: StoreRegistry;
  /** Passed to every factory. */
  readonly options?: StoreBuildOptions;
}

/** One store (top-level or nested) that keeps its own data, and what it holds. */
export interface StoreUsageRow {
  /** The top-level store's name. */
  readonly store: string;
  /** Where it sits in that store's spec (`verify.backend.filesystem`). */
  readonly path: string;
  readonly kind: string;
  readonly bytes: number;
  readonly count: number;
  /** Its eviction limit; 0: none. */
  readonly maxBytes: number;
}

/** Store kinds backed by an outside service, which can be down while Cairn runs. */
const REMOTE_KINDS: ReadonlySet<string> = new Set(["redis_store", "experimental_cloud_object_store", "grpc"]);

/** Owns the named top-level stores. */
export class StoreManager implements StoreLookup {
  #stores: Map<string, StoreDriver>;
  #all: { store: string; path: string; driver: StoreDriver }[];
  #closed = false;

  /** Use {@linkcode createStoreManager}; this takes already built (not yet initialised) stores. */
  constructor(
    stores: Map<string, StoreDriver>,
    all: { store: string; path: string; driver: StoreDriver }[] = [],
  ) {
    this.#stores = stores;
    this.#all = all;
  }

  /** Usage of every store, nested ones included, that keeps its own data (memory, filesystem). */
  usage(): StoreUsageRow[] {
    const rows: StoreUsageRow[] = [];
    for (const { store, path, driver } of this.#all) {
      const u = driver.usage?.();
      if (u) rows.push({ store, path, kind: driver.kind, ...u });
    }
    return rows;
  }

  /** The store called `name`; FAILED_PRECONDITION naming the defined stores when there is none. */
  get(name: string): StoreDriver {
    const store = this.#stores.get(name);
    if (!store) {
      throw new CairnError(
        Code.FailedPrecondition,
        `No store named "${name}"; defined stores are ${[...this.#stores.keys()].join(", ") || "(none)"}`,
      );
    }
    return store;
  }

  /** True when a store of that name exists. */
  has(name: string): boolean {
    return this.#stores.has(name);
  }

  /** Store names in config order. */
  names(): string[] {
    return [...this.#stores.keys()];
  }

  /**
   * Nested stores that talk to an outside service (`redis_store`, S3, `grpc`), named
   * `STORE/path.in.its.spec`: a probe of the top-level store reaches only some of its leaves (an empty digest
   * goes to the lower side of a `size_partitioning`, a read stops at the first tier that has it), so health
   * checks probe these directly.
   */
  backends(): [string, StoreDriver][] {
    return this.#all
      .filter(({ path, driver }) => path.includes(".") && REMOTE_KINDS.has(driver.kind))
      .map(({ store, path, driver }) => [`${store}/${path}`, driver]);
  }

  /** Initialises every store once, in config order. */
  async init(): Promise<void> {
    for (const [name, store] of this.#stores) {
      try {
        await store.init?.(this);
      } catch (err) {
        const e = CairnError.from(err);
        if (e.message.startsWith("Cannot open store")) throw e;
        throw new CairnError(e.code, `Cannot open store "${name}": ${e.message}`, { cause: err });
      }
    }
  }

  /** Probes each store with a `hasMany` and reports per store (never throws). */
  check(timeoutMs = 5000): Promise<StoreHealth[]> {
    return Promise.all([...this.#stores].map(async ([name, store]) => {
      const start = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          store.hasMany([EMPTY_DIGEST]),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        return { name, kind: store.kind, ok: true, ms: performance.now() - start };
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        return { name, kind: store.kind, ok: false, error, ms: performance.now() - start };
      } finally {
        clearTimeout(timer);
      }
    }));
  }

  /** Closes every store (reverse config order); errors are collected and the first is thrown. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const errors: unknown[] = [];
    for (const store of [...this.#stores.values()].reverse()) {
      try {
        await store.close?.();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length) throw CairnError.from(errors[0], "Cannot close stores");
  }
}

/** Normalises the accepted config shapes to `[name, spec]` pairs. */
function entriesOf(config: StoresConfig): [string, unknown][] {
  if (Array.isArray(config)) {
    return config.map((item, i) => {
      const { name, spec, ...rest } = item as { name?: unknown; spec?: unknown; [k: string]: unknown };
      if (typeof name !== "string" || name === "") {
        throw new CairnError(Code.InvalidArgument, `Cannot open stores: entry ${i} has no name`);
      }
      return [name, spec !== undefined ? spec : rest];
    });
  }
  return Object.entries(config as Record<string, unknown>);
}

/** Builds and initialises every store of the config; on failure, closes what was built. */
export async function createStoreManager(
  config: StoresConfig,
  options: StoreManagerOptions = {},
): Promise<StoreManager> {
  const registry = options.registry ?? createStoreRegistry();
  const built = new Map<string, StoreDriver>();
  const all: { store: string; path: string; driver: StoreDriver }[] = [];
  const manager = new StoreManager(built, all);
  const outer = options.options?.onBuilt;
  const buildOptions: StoreBuildOptions = {
    ...options.options,
    onBuilt: (store, path, driver) => {
      all.push({ store, path, driver });
      outer?.(store, path, driver);
    },
  };
  try {
    for (const [name, spec] of entriesOf(config)) {
      if (built.has(name)) {
        throw new CairnError(Code.InvalidArgument, `Cannot open store "${name}": name used twice`);
      }
      built.set(name, registry.build(name, spec, buildOptions));
    }
    await manager.init();
  } catch (err) {
    await manager.close().catch(() => {});
    throw err;
  }
  return manager;
}
