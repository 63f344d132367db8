/**
 * `ref_store`: forwards everything to another top-level store named in the config, resolved in
 * `init(lookup)` (so stores may be declared in any order).
 *
 * @example
 * ```ts
 * // { ref_store: { name: "CAS_MAIN" } }
 * import { createRefStore } from "./ref_store.ts";
 * import { createMemoryStore } from "./memory_store.ts";
 * import { digestOf } from "../digest/digest.ts";
 * import { getBytes, putBytes } from "./helpers.ts";
 * const stores = new Map([["CAS_MAIN", createMemoryStore()]]);
 * const manager = { get: (name: string) => stores.get(name)! }; // a StoreLookup
 * const ref = createRefStore("CAS_MAIN");
 * await ref.init(manager);
 * const bytes = new TextEncoder().encode("hello");
 * const digest = digestOf(bytes);
 * await putBytes(ref, digest, bytes);
 * console.log(new TextDecoder().decode(await getBytes(ref, digest, { maxSize: 1024 }))); // hello
 * ```
 * @module
 */
import { CairnError, Code } from "../util/error.ts";
import { getBytes, WrapperStore } from "./helpers.ts";
import type { StoreFactory } from "./registry.ts";
import type { ReadOptions, StoreDriver, StoreKey, StoreLookup } from "./types.ts";

/** Forwards to the store of another name (the {@linkcode WrapperStore} forwarding, to a store resolved late). */
export class RefStore extends WrapperStore {
  override readonly kind = "ref_store";
  /** The referenced store's name. */
  readonly name: string;
  readonly #where: string;
  #target: StoreDriver | undefined;

  /** `where` names the owner in messages (e.g. `store "ac"`). */
  constructor(name: string, where = "ref_store") {
    super();
    this.name = name;
    this.#where = where;
  }

  /** The resolved store (after `init`): what every call is forwarded to. */
  override get inner(): StoreDriver {
    return this.target;
  }

  /** The resolved store (after `init`). */
  get target(): StoreDriver {
    if (!this.#target) {
      throw new CairnError(
        Code.FailedPrecondition,
        `Cannot use ${this.#where}: ref_store "${this.name}" was not resolved (init was not called)`,
      );
    }
    return this.#target;
  }

  /** Resolves the name (the target is initialized by the store manager, not through the ref). */
  override init(stores: StoreLookup): Promise<void> {
    try {
      let target = stores.get(this.name);
      // Follow chains of refs to catch cycles early.
      const seen = new Set<string>([this.name]);
      while (target instanceof RefStore) {
        if (seen.has(target.name)) {
          throw new CairnError(
            Code.InvalidArgument,
            `Cannot open ${this.#where}: ref_store "${this.name}" refers to itself through ${
              [...seen].join(" → ")
            }`,
          );
        }
        seen.add(target.name);
        target = stores.get(target.name);
      }
      this.#target = stores.get(this.name);
      return Promise.resolve();
    } catch (err) {
      if (err instanceof CairnError && err.code === Code.InvalidArgument) return Promise.reject(err);
      return Promise.reject(
        new CairnError(
          Code.InvalidArgument,
          `Cannot open ${this.#where}: ref_store names "${this.name}", which is not a defined store (${
            err instanceof Error ? err.message : String(err)
          })`,
          { cause: err },
        ),
      );
    }
  }

  /** The referenced store's shortcut for small values, if it has one. */
  readBytes(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array> {
    return getBytes(this.target, key, options);
  }

  /** The referenced store: a ref changes nothing. */
  innerStore(): StoreDriver {
    return this.target;
  }

  /** Does not close the target: the store manager owns it. */
  override close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Creates a {@linkcode RefStore} for the store named `name`. */
export function createRefStore(name: string): RefStore {
  return new RefStore(name);
}

/** Registry factory for `{ ref_store: { name } }`. */
export const refStoreFactory: StoreFactory<"ref_store"> = (fields, ctx) => {
  const name = ctx.string(fields, "name");
  if (name === "") throw ctx.error("ref_store name is empty");
  return new RefStore(name, `store "${ctx.storeName}"`);
};
