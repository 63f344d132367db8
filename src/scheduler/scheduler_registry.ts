/**
 * Builds schedulers from config: each kind (`simple`, `cache_lookup`, `property_modifier`; `grpc` is not yet
 * supported) maps to a constructor. A `simple` scheduler with `experimental_backend: { redis: { redis_store } }`
 * keeps its state in that Redis store's server ({@linkcode RedisScheduler}); otherwise in memory. Wrappers pass the nested scheduler's worker side through, so the
 * worker API can attach to any scheduler whose chain ends in `simple`.
 *
 * @example
 * ```ts
 * import { createSchedulers } from "./scheduler_registry.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const config = { schedulers: { MAIN_SCHEDULER: { simple: {} } } };
 * const stores = { get: (_name: string) => createMemoryStore() };
 * const schedulers = createSchedulers(config.schedulers, { stores });
 * const main = schedulers.get("MAIN_SCHEDULER")!; // { actions, workers }
 * await main.actions.close();
 * ```
 * @module
 */
import type { StoreLookup } from "../store/types.ts";
import { CairnError, Code } from "../util/error.ts";
import { CacheLookupScheduler } from "./cache_lookup_scheduler.ts";
import { PropertyModifierScheduler } from "./property_modifier_scheduler.ts";
import type { CacheLookupSpec, PropertyModifierSpec, SchedulerSpec, SimpleSpec } from "./scheduler_spec.ts";
import { SimpleScheduler } from "./simple_scheduler.ts";
import { RedisScheduler } from "./redis_scheduler.ts";
import { RedisStore } from "../store/redis_store.ts";
import type { BuiltScheduler } from "./types.ts";

/** What building a scheduler may need. */
export interface SchedulerContext {
  /** Resolves `ac_store` names. */
  readonly stores: StoreLookup;
}

type Factory = (name: string, spec: never, ctx: SchedulerContext) => BuiltScheduler;

const FACTORIES: Record<string, Factory> = {
  simple: (name, spec: SimpleSpec, ctx) => {
    const backend = spec.experimental_backend;
    if (backend !== undefined && backend !== "memory") {
      const storeName = backend.redis?.redis_store;
      if (typeof storeName !== "string" || storeName === "") {
        throw new CairnError(
          Code.InvalidArgument,
          `Cannot create scheduler "${name}": experimental_backend.redis.redis_store is missing`,
        );
      }
      const store = ctx.stores.get(storeName);
      if (!(store instanceof RedisStore)) {
        throw new CairnError(
          Code.InvalidArgument,
          `Cannot create scheduler "${name}": experimental_backend.redis.redis_store "${storeName}" is a ` +
            `${store.kind} store; it must name a redis_store`,
        );
      }
      const s = new RedisScheduler(spec, store, name);
      return { actions: s, workers: s };
    }
    const s = new SimpleScheduler(spec);
    return { actions: s, workers: s };
  },
  cache_lookup: (name, spec: CacheLookupSpec, ctx) => {
    if (typeof spec.ac_store !== "string" || spec.ac_store === "") {
      throw new CairnError(Code.InvalidArgument, `Cannot create scheduler "${name}": ac_store is missing`);
    }
    const inner = createScheduler(name, spec.scheduler, ctx);
    return {
      actions: new CacheLookupScheduler(ctx.stores.get(spec.ac_store), inner.actions),
      workers: inner.workers,
    };
  },
  property_modifier: (name, spec: PropertyModifierSpec, ctx) => {
    if (!Array.isArray(spec.modifications)) {
      throw new CairnError(
        Code.InvalidArgument,
        `Cannot create scheduler "${name}": modifications is missing`,
      );
    }
    const inner = createScheduler(name, spec.scheduler, ctx);
    return {
      actions: new PropertyModifierScheduler(spec.modifications, inner.actions),
      workers: inner.workers,
    };
  },
  grpc: (name) => {
    throw new CairnError(
      Code.Unimplemented,
      `Cannot create scheduler "${name}": scheduler kind "grpc" is not yet supported`,
    );
  },
  historical_resource: (name) => {
    throw new CairnError(
      Code.Unimplemented,
      `Cannot create scheduler "${name}": scheduler kind "historical_resource" is not yet supported`,
    );
  },
};

/** Builds one scheduler (and its nested ones) from a spec. `name` is used in messages. */
export function createScheduler(name: string, spec: SchedulerSpec, ctx: SchedulerContext): BuiltScheduler {
  if (spec === null || typeof spec !== "object") {
    throw new CairnError(Code.InvalidArgument, `Cannot create scheduler "${name}": spec is not an object`);
  }
  const kinds = Object.keys(spec);
  const kind = kinds[0];
  if (kinds.length !== 1 || kind === undefined) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot create scheduler "${name}": expected exactly one kind, got ${kinds.join(", ") || "none"}`,
    );
  }
  const factory = FACTORIES[kind];
  if (factory === undefined) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot create scheduler "${name}": unknown kind "${kind}" (known: ${
        Object.keys(FACTORIES).join(", ")
      })`,
    );
  }
  return factory(name, (spec as Record<string, unknown>)[kind] as never, ctx);
}

/** A config's `schedulers`: the canonical array of `{ name, <kind>: {...} }`, or a name → spec record. */
export type SchedulerSpecs =
  | readonly ({ readonly name: string } & Readonly<Record<string, unknown>>)[]
  | Readonly<Record<string, SchedulerSpec>>;

/** Every built scheduler of a config, by name. */
export interface SchedulerSet {
  /** The scheduler of that name; throws INVALID_ARGUMENT naming the known ones when there is none. */
  get(name: string): BuiltScheduler;
  has(name: string): boolean;
  names(): string[];
  /** Closes every scheduler (timers, in-flight operations). */
  close(): Promise<void>;
}

/** Builds every scheduler of a config's `schedulers`. */
export function createSchedulers(specs: SchedulerSpecs, ctx: SchedulerContext): SchedulerSet {
  const entries: [string, SchedulerSpec][] = Array.isArray(specs)
    ? specs.map((entry) => {
      const { name, ...spec } = entry as { name: string } & Record<string, unknown>;
      return [name, spec as SchedulerSpec];
    })
    : Object.entries(specs as Readonly<Record<string, SchedulerSpec>>);
  const built = new Map<string, BuiltScheduler>();
  try {
    for (const [name, spec] of entries) built.set(name, createScheduler(name, spec, ctx));
  } catch (err) {
    for (const b of built.values()) void b.actions.close();
    throw err;
  }
  return {
    get(name) {
      const b = built.get(name);
      if (b === undefined) {
        throw new CairnError(
          Code.InvalidArgument,
          `Unknown scheduler "${name}": known schedulers are ${
            [...built.keys()].map((n) => `"${n}"`).join(", ") || "none"
          }`,
        );
      }
      return b;
    },
    has: (name) => built.has(name),
    names: () => [...built.keys()],
    close: async () => {
      await Promise.all([...built.values()].map((b) => b.actions.close()));
    },
  };
}
