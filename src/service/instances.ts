/**
 * Per-instance settings of a service, looked up by the request's `instance_name`.
 *
 * Instance names are matched exactly as configured (`""`, `main`, `a/b`). An unknown name is refused with
 * an error that lists the known ones, so a client typo is obvious.
 *
 * @example
 * ```ts
 * import { createInstances } from "./instances.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const instances = createInstances("CAS", new Map([["main", { casStore: createMemoryStore() }]]));
 * const request = { instanceName: "main" };
 * const { casStore } = instances.get(request.instanceName);
 * console.log(casStore.kind); // memory
 * ```
 * @module
 */
import { CairnError, Code, quoteClient } from "../util/error.ts";

/**
 * Longest instance name accepted (characters). REAPI sets no limit; NativeLink has none either. Real names are
 * short (`""`, `main`, `projects/x/instances/default`); 1 KiB leaves ample room and keeps a huge name out of
 * lookups, logs and error messages.
 */
export const MAX_INSTANCE_NAME_CHARS = 1024;

/** INVALID_ARGUMENT unless `name` is at most {@linkcode MAX_INSTANCE_NAME_CHARS} characters. */
export function checkInstanceNameLength(name: string): void {
  if (name.length > MAX_INSTANCE_NAME_CHARS) {
    throw new CairnError(
      Code.InvalidArgument,
      `Instance name is ${name.length} characters long, more than the limit of ${MAX_INSTANCE_NAME_CHARS}`,
    );
  }
}

/** Settings per instance name, with a clear error for unknown names. */
export interface Instances<T> {
  /** The settings of that instance; throws INVALID_ARGUMENT (or the configured code) when unknown. */
  get(instanceName: string): T;
  /** True when the instance is configured. */
  has(instanceName: string): boolean;
  /** Every configured instance name. */
  names(): string[];
  /** Every configured entry. */
  entries(): [string, T][];
}

/** Quotes and lists instance names for messages: `"", "main"`. */
export function listInstanceNames(names: Iterable<string>): string {
  const list = [...names].map((n) => JSON.stringify(n));
  return list.length === 0 ? "(none)" : list.join(", ");
}

/**
 * Builds an {@linkcode Instances} map.
 *
 * @param service Service name for messages (`CAS`, `ActionCache`, …).
 * @param entries Instance name → settings.
 * @param unknownCode Code for unknown names (INVALID_ARGUMENT by default: NOT_FOUND would read as a cache miss).
 */
export function createInstances<T>(
  service: string,
  entries: ReadonlyMap<string, T>,
  unknownCode: Code = Code.InvalidArgument,
): Instances<T> {
  const map = new Map(entries);
  return {
    get(instanceName: string): T {
      checkInstanceNameLength(instanceName);
      const found = map.get(instanceName);
      if (found === undefined) {
        throw new CairnError(
          unknownCode,
          `Unknown instance name ${quoteClient(instanceName)} for ${service}: known instances are ${
            listInstanceNames(map.keys())
          }`,
        );
      }
      return found;
    },
    has: (instanceName) => map.has(instanceName),
    names: () => [...map.keys()],
    entries: () => [...map.entries()],
  };
}

/** Quotes a client-supplied name for a message, cut to 200 characters. */
export function clipName(name: string): string {
  const quoted = JSON.stringify(name.length > 200 ? name.slice(0, 200) : name);
  return name.length > 200 ? `${quoted}… (${name.length} chars)` : quoted;
}
