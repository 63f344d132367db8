/**
 * The schema language of the config: each node says what a JSON value must look like, how it normalizes, and
 * (as a phantom type) what TypeScript type the canonical value has. `nativelink_schema.ts` writes the whole
 * config format in it; `validate.ts` walks it; `types.ts` derives every config type from it with
 * {@linkcode Infer}; `walk_config.ts` walks validated values along it. A field is written once, here, and
 * reaches validation, the types and the reference walker from that one place.
 *
 * - `s.string()`, `s.int()`, `s.bool()`, `s.size()`, `s.duration()`, `s.enum("a", "b")`, `s.array(n)`,
 *   `s.map(n)`, `s.object({ field: node, other: s.optional(node), third: s.withDefault(node, value) })`.
 * - `s.ref("store")`: the name of a top-level store (checked to exist, walked by `walk_config.ts`).
 * - `s.unsupported(hint)`: a field or kind of NativeLink's format that Cairn does not implement; refused when
 *   present, and left out of the derived type (so code cannot read it by mistake).
 * - `s.variant(noun, { kind: node })`: `{ kind: {...} }`; `s.lazy<T>(() => node)` for recursion (give `T`).
 *
 * @example
 * ```ts
 * import { type Infer, s } from "./schema.ts";
 * const evictionPolicy = s.object({ max_bytes: s.optional(s.size()), max_seconds: s.optional(s.duration()) });
 * const memory = s.object({ eviction_policy: s.optional(evictionPolicy) });
 * type Memory = Infer<typeof memory>; // { eviction_policy?: { max_bytes?: number; max_seconds?: number } }
 * const spec: Memory = { eviction_policy: { max_bytes: 1000 } };
 * ```
 * @module
 */

declare const TYPE: unique symbol;

/** Carries the TypeScript type `T` of the canonical value of a node (type-level only; never set). */
export interface Typed<T> {
  readonly [TYPE]?: T;
}

/** The TypeScript type of the canonical value of a node (or field). */
export type Infer<N> = N extends Typed<infer T> ? T : never;

/** The type of a field or kind Cairn refuses (`s.unsupported()`); such fields are left out of inferred types. */
export interface Unsupported {
  readonly __unsupported: true;
}

/** What a name in the config refers to. */
export type RefTarget = "store" | "scheduler";

/** A schema node; `T` is the type of its canonical value. */
export type Node<T = unknown> = RawNode & Typed<T>;

/** The runtime shape of a schema node (what `validate.ts` switches on). */
export type RawNode =
  | { readonly t: "string" }
  | { readonly t: "number"; readonly integer: boolean; readonly signed: boolean }
  | { readonly t: "bool" }
  | { readonly t: "size" }
  | { readonly t: "duration"; readonly unit: "s" | "ms"; readonly signed: boolean }
  | { readonly t: "enum"; readonly values: readonly string[] }
  | ObjectNode
  | { readonly t: "array"; readonly of: Node }
  | { readonly t: "map"; readonly of: Node; readonly what: string }
  | VariantNode
  | TaggedNode
  | { readonly t: "ref"; readonly to: RefTarget }
  | { readonly t: "lazy"; readonly get: () => Node }
  | { readonly t: "named_list"; readonly of: VariantNode }
  | { readonly t: "instance_list"; readonly of: ObjectNode }
  | { readonly t: "bytestream"; readonly of: ObjectNode; readonly legacy: ObjectNode }
  | { readonly t: "any" }
  | PathNode
  | UnsupportedNode;

/**
 * A filesystem path. Relative paths are resolved once, at load, against the directory Cairn was started in
 * (`ValidateContext.baseDir`), so every consumer (and every child process) sees an absolute path.
 * `role` says what Cairn does with it, for the start-time check: `dir` (a directory Cairn writes: created
 * when missing, must be writable), `file` (read: must exist and be readable), `other` (no check).
 */
export interface PathNode {
  readonly t: "path";
  readonly role: "dir" | "file" | "other";
}

/**
 * A field (or kind) of NativeLink's format that Cairn parses but does not implement: present at all, the
 * config is refused with `<json path>: not supported by Cairn yet` (never silently ignored).
 */
export interface UnsupportedNode {
  readonly t: "unsupported";
  /** Why, or what to use instead (appended to the message). */
  readonly hint?: string;
}

/** A field of an object node; `R` says whether the canonical value always has it (required or defaulted). */
export interface Field<T = unknown, R extends boolean = boolean> extends Typed<T> {
  readonly node: Node;
  readonly required: boolean;
  /** Type-level: present in the canonical value (required, or defaulted). */
  readonly present?: R;
  /** Value filled in when the field is absent. */
  readonly default?: unknown;
  /** Old spellings accepted for this field (normalized to the field's own name). */
  readonly aliases?: readonly string[];
}

/** An object with a fixed set of fields; unknown keys are errors. */
export interface ObjectNode<T = unknown> extends Typed<T> {
  readonly t: "object";
  readonly fields: Readonly<Record<string, Field>>;
  /** Called after the fields are validated, to derive canonical fields; may throw a problem string. */
  readonly finish?: (value: Record<string, unknown>) => Record<string, unknown> | string;
}

/**
 * An externally tagged union: `{ kind: body }` (exactly one key), or a bare string for body-less kinds.
 * `noun` names the union in messages ("store kind").
 */
export interface VariantNode<T = unknown> extends Typed<T> {
  readonly t: "variant";
  readonly noun: string;
  /** `null` marks a kind without a body (written `"kind"`). */
  readonly variants: Readonly<Record<string, Node | null>>;
  /** Old kind names accepted, mapped to a rewrite into a canonical `[kind, body]`. */
  readonly legacy?: Readonly<
    Record<string, (body: Record<string, unknown>) => [string, Record<string, unknown>]>
  >;
}

/** An internally tagged union: `{ <tag>: "kind", ...fields of that kind }`. */
export interface TaggedNode<T = unknown> extends Typed<T> {
  readonly t: "tagged";
  readonly tag: string;
  readonly variants: Readonly<Record<string, ObjectNode>>;
}

/** What an object's field table holds: a bare node (a required field) or a {@linkcode Field}. */
export type FieldInput = Node | Field;

type Simplify<T> = { [K in keyof T]: T[K] } & NonNullable<unknown>;
/** `true` when the canonical value always has the field (a bare node, `s.required`, `s.withDefault`). */
type IsPresent<X> = X extends { readonly node: Node; readonly present?: infer R } ? R : true;
/** `"present"`, `"optional"` or `"refused"` (an `s.unsupported()` field, left out of the type). */
type Presence<X> = Infer<X> extends Unsupported ? "refused"
  : IsPresent<X> extends true ? "present"
  : "optional";

/**
 * The canonical object type of a field table: refused fields left out, optional ones marked `?` (a homomorphic
 * mapping, so each field's doc comment in the schema shows on the derived type too).
 */
export type InferFields<F> = Simplify<
  & { -readonly [K in keyof F as Presence<F[K]> extends "present" ? K : never]: Infer<F[K]> }
  & { -readonly [K in keyof F as Presence<F[K]> extends "optional" ? K : never]?: Infer<F[K]> }
>;

/** The canonical type of an externally tagged union: `{ kind: body }`, or `"kind"` for a body-less kind. */
export type InferVariants<V> = {
  [K in keyof V & string]: V[K] extends null ? K
    : Infer<V[K]> extends Unsupported ? never
    : { [P in K]: Infer<V[K]> };
}[keyof V & string];

/** The canonical type of an internally tagged union (`{ <tag>: "kind", ...fields }`). */
export type InferTagged<Tag extends string, V> = {
  [K in keyof V & string]: Simplify<{ [P in Tag]: K } & Infer<V[K]>>;
}[keyof V & string];

function isField(x: FieldInput): x is Field {
  return "node" in x;
}

function object<F extends Record<string, FieldInput>>(fields: F): ObjectNode<InferFields<F>>;
function object<F extends Record<string, FieldInput>, R>(
  fields: F,
  finish: (value: InferFields<F>) => R | string,
): ObjectNode<R>;
function object(
  fields: Record<string, FieldInput>,
  finish?: (value: never) => unknown,
): ObjectNode {
  const out: Record<string, Field> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = isField(v) ? v : { node: v, required: true };
  return finish
    ? { t: "object", fields: out, finish: finish as unknown as NonNullable<ObjectNode["finish"]> }
    : { t: "object", fields: out };
}

function node<T>(raw: RawNode): Node<T> {
  return raw as Node<T>;
}

/** Schema builders. A bare node in an object's field table is a required field. */
export const s = {
  string: (): Node<string> => node({ t: "string" }),
  /** A non-negative integer (strings of digits accepted). */
  int: (): Node<number> => node({ t: "number", integer: true, signed: false }),
  /** Any number (e.g. retry delays). */
  float: (): Node<number> => node({ t: "number", integer: false, signed: true }),
  bool: (): Node<boolean> => node({ t: "bool" }),
  /** A data size: bytes, or `"10gb"`; normalized to bytes. */
  size: (): Node<number> => node({ t: "size" }),
  /** A duration: seconds, or `"1h2m"`; normalized to seconds. */
  duration: (): Node<number> => node({ t: "duration", unit: "s", signed: false }),
  /** A duration allowed to be negative (e.g. `-1` disables a periodic task). */
  signedDuration: (): Node<number> => node({ t: "duration", unit: "s", signed: true }),
  /** A duration held in milliseconds: numbers as is, `"2s"` becomes 2000. */
  durationMs: (): Node<number> => node({ t: "duration", unit: "ms", signed: false }),
  enum: <const V extends string>(...values: V[]): Node<V> => node({ t: "enum", values }),
  array: <N extends Node>(of: N): Node<Infer<N>[]> => node({ t: "array", of }),
  /** An object with free keys (`what` names a key in messages). */
  map: <N extends Node>(of: N, what = "key"): Node<Record<string, Infer<N>>> => node({ t: "map", of, what }),
  /** The name of a top-level store or scheduler (checked to exist; found by `walk_config.ts`). */
  ref: (to: RefTarget): Node<string> => node({ t: "ref", to }),
  /** A node defined later (recursion); its type `T` must be given. */
  lazy: <T>(get: () => Node): Node<T> => node({ t: "lazy", get }),
  any: (): Node<unknown> => node({ t: "any" }),
  /** A directory Cairn writes (created at start when missing); relative to the start directory. */
  dir: (): Node<string> => node({ t: "path", role: "dir" }),
  /** A file Cairn reads (must exist at start); relative to the start directory. */
  file: (): Node<string> => node({ t: "path", role: "file" }),
  /** Any other path (resolved against the start directory, not checked). */
  path: (): Node<string> => node({ t: "path", role: "other" }),
  /** Parsed but not implemented by Cairn: refused when present, left out of the inferred type. */
  unsupported: (hint?: string): Node<Unsupported> =>
    node(hint ? { t: "unsupported", hint } : { t: "unsupported" }),
  /** A field that may be absent (`aliases`: older spellings accepted for it). */
  optional: <N extends Node>(of: N, aliases?: readonly string[]): Field<Infer<N>, false> => ({
    node: of,
    required: false,
    ...(aliases ? { aliases } : {}),
  }),
  /** A field that must be present (a bare node means the same; this form takes `aliases`). */
  required: <N extends Node>(of: N, aliases?: readonly string[]): Field<Infer<N>, true> => ({
    node: of,
    required: true,
    ...(aliases ? { aliases } : {}),
  }),
  /** A field filled in with `value` when absent (so always present in the canonical value). */
  withDefault: <N extends Node>(of: N, value: Infer<N>): Field<Infer<N>, true> => ({
    node: of,
    required: false,
    default: value,
  }),
  /**
   * An object with the fields of `fields`; unknown keys are refused. `finish` (optional) derives canonical
   * fields after validation (its return type is the object's type), or returns a problem string.
   */
  object,
  /** `{ kind: body }` (one key); a `null` body marks a kind written as the bare string `"kind"`. */
  variant: <V extends Record<string, Node | null>>(
    noun: string,
    variants: V,
    legacy?: VariantNode["legacy"],
  ): VariantNode<InferVariants<V>> =>
    legacy ? { t: "variant", noun, variants, legacy } : { t: "variant", noun, variants },
  tagged: <const Tag extends string, V extends Record<string, ObjectNode>>(
    tag: Tag,
    variants: V,
  ): TaggedNode<InferTagged<Tag, V>> => ({ t: "tagged", tag, variants }),
  /** Top-level named specs: `[{ name, <kind>: {...} }]` or the older `{ NAME: { <kind>: {...} } }`. */
  namedList: <T>(of: VariantNode<T>): Node<(T & { name: string })[]> => node({ t: "named_list", of }),
  /** Per-instance service configs: `[{ instance_name?, ... }]` or the older `{ INSTANCE: {...} }`. */
  instanceList: <T>(of: ObjectNode<T>): Node<Simplify<T & { instance_name: string }>[]> =>
    node({ t: "instance_list", of }),
  /** The `bytestream` service: per-instance entries, or its older one-object form (normalized to the former). */
  bytestream: <T>(of: ObjectNode<T>, legacy: ObjectNode): Node<Simplify<T & { instance_name: string }>[]> =>
    node({ t: "bytestream", of, legacy }),
};
