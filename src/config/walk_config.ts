/**
 * The one walker over a validated config: it follows the schema (`nativelink_schema.ts`), not the shape of
 * the JSON, so it finds every name that refers to a store or scheduler (`s.ref`) and every `{ kind: body }` of
 * a store or scheduler spec, wherever the schema allows one — nothing is matched by key name. The reference
 * check (`check_references.ts`), the app (which stores the servers need, where filesystem stores keep data)
 * and the worker (which stores it builds) all ask it.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./load_config.ts";
 * import { storeKindsIn, storeRefsIn } from "./walk_config.ts";
 * const config = parseConfig(
 *   `{ stores: [{ name: "A", memory: {} }, { name: "B", verify: { backend: { ref_store: { name: "A" } } } }] }`,
 *   "demo.json5",
 *   {},
 * );
 * storeRefsIn(config.stores[1]!); // ["A"]
 * storeKindsIn(config.stores[1]!).map(([kind]) => kind); // ["verify", "ref_store"]
 * ```
 * @module
 */
import { ROOT, SCHEDULER_KINDS, SERVER, STORE_KINDS } from "./nativelink_schema.ts";
import type { Node, ObjectNode, RefTarget, VariantNode } from "./schema.ts";
import type { CairnConfig, SchedulerSpec, ServerConfig, StoreKind, StoreKinds, StoreSpec } from "./types.ts";
import { childPath } from "./validate.ts";

/** What the walker reports. */
export interface ConfigVisitor {
  /** A name that refers to a top-level store or scheduler, at its JSON path. */
  ref?(to: RefTarget, name: string, path: string): void;
  /** One `{ kind: body }` of a union (`noun` is the schema's, e.g. `"store kind"`); nested ones follow. */
  kind?(noun: string, kind: string, body: unknown, path: string): void;
}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Walks a validated (canonical) `value` along `node`, reporting to `visitor`. */
export function walkValue(node: Node, value: unknown, visitor: ConfigVisitor, path = ""): void {
  if (value === undefined) return;
  switch (node.t) {
    case "lazy":
      return walkValue(node.get(), value, visitor, path);
    case "ref":
      if (typeof value === "string") visitor.ref?.(node.to, value, path);
      return;
    case "object":
      return walkObject(node, value, visitor, path);
    case "array":
      if (Array.isArray(value)) value.forEach((v, i) => walkValue(node.of, v, visitor, `${path}[${i}]`));
      return;
    case "map":
      if (isObject(value)) {
        for (const [k, v] of Object.entries(value)) walkValue(node.of, v, visitor, childPath(path, k));
      }
      return;
    case "variant":
      return walkVariant(node, value, visitor, path);
    case "tagged": {
      const body = isObject(value) ? node.variants[String(value[node.tag])] : undefined;
      if (body) walkObject(body, value, visitor, path);
      return;
    }
    case "named_list":
      if (Array.isArray(value)) {
        value.forEach((item, i) => {
          if (!isObject(item)) return;
          const { name: _name, ...spec } = item;
          walkVariant(node.of, spec, visitor, `${path}[${i}]`);
        });
      }
      return;
    case "instance_list":
    case "bytestream":
      if (Array.isArray(value)) value.forEach((v, i) => walkObject(node.of, v, visitor, `${path}[${i}]`));
      return;
    default:
      return;
  }
}

function walkObject(node: ObjectNode, value: unknown, visitor: ConfigVisitor, path: string): void {
  if (!isObject(value)) return;
  for (const [name, field] of Object.entries(node.fields)) {
    if (name in value) walkValue(field.node, value[name], visitor, childPath(path, name));
  }
}

function walkVariant(node: VariantNode, value: unknown, visitor: ConfigVisitor, path: string): void {
  if (typeof value === "string") {
    if (value in node.variants) visitor.kind?.(node.noun, value, undefined, path);
    return;
  }
  if (!isObject(value)) return;
  for (const [kind, body] of Object.entries(value)) {
    const bodyNode = node.variants[kind];
    if (bodyNode === undefined) continue;
    const here = childPath(path, kind);
    visitor.kind?.(node.noun, kind, body, here);
    if (bodyNode !== null) walkValue(bodyNode, body, visitor, here);
  }
}

/** Walks a whole validated config (paths as in config error messages: `servers[0].services.cas[0]...`). */
export function walkConfig(config: CairnConfig, visitor: ConfigVisitor): void {
  walkValue(ROOT, config, visitor);
}

/** Names of top-level stores a store spec refers to (its `ref_store`s, nested ones included), in order. */
export function storeRefsIn(spec: StoreSpec | (StoreSpec & { name: string })): string[] {
  const out: string[] = [];
  walkValue(STORE_KINDS, withoutName(spec), { ref: (to, name) => to === "store" && out.push(name) });
  return out;
}

/** Names of top-level stores a scheduler spec uses (e.g. `cache_lookup.ac_store`), nested schedulers included. */
export function schedulerStoreRefs(spec: SchedulerSpec | (SchedulerSpec & { name: string })): string[] {
  const out: string[] = [];
  walkValue(SCHEDULER_KINDS, withoutName(spec), { ref: (to, name) => to === "store" && out.push(name) });
  return out;
}

/** Names of top-level stores a server's services use (`cas_store`, `ac_store`, `fetch_store`, ...), in order. */
export function serverStoreRefs(server: ServerConfig): string[] {
  const out: string[] = [];
  walkValue(SERVER, server, { ref: (to, name) => to === "store" && out.push(name) });
  return out;
}

/** Every `[kind, body]` inside a store spec, outermost first (the spec's own kind, then nested stores). */
export function storeKindsIn(
  spec: StoreSpec | (StoreSpec & { name: string }),
): { [K in StoreKind]: [K, StoreKinds[K]] }[StoreKind][] {
  const out: [string, unknown][] = [];
  walkValue(STORE_KINDS, withoutName(spec), {
    kind: (noun, kind, body) => noun === STORE_KINDS.noun && out.push([kind, body]),
  });
  return out as { [K in StoreKind]: [K, StoreKinds[K]] }[StoreKind][];
}

/** Every `[kind, body]` inside a scheduler spec, outermost first. */
export function schedulerKindsIn(
  spec: SchedulerSpec | (SchedulerSpec & { name: string }),
): [string, unknown][] {
  const out: [string, unknown][] = [];
  walkValue(SCHEDULER_KINDS, withoutName(spec), {
    kind: (noun, kind, body) => noun === SCHEDULER_KINDS.noun && out.push([kind, body]),
  });
  return out;
}

function withoutName(spec: object): Obj {
  const { name: _name, ...rest } = spec as Obj;
  return rest;
}
