/**
 * A tiny declarative schema language for config files: each node says what a JSON value must look like and
 * how it normalizes. The NativeLink-compatible tables in `nativelink_schema.ts` are written in it and
 * `validate.ts` walks them.
 *
 * @example
 * ```ts
 * import { s } from "./schema.ts";
 * const evictionPolicy = s.object({ max_bytes: s.size(), max_seconds: s.duration() });
 * const memory = s.object({ eviction_policy: s.optional(evictionPolicy) });
 * ```
 * @module
 */

/** What a name in the config refers to. */
export type RefTarget = "store" | "scheduler";

/** A schema node. */
export type Node =
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

/** A field of an object node. */
export interface Field {
  readonly node: Node;
  readonly required: boolean;
  /** Value filled in when the field is absent. */
  readonly default?: unknown;
  /** Old spellings accepted for this field (normalized to the field's own name). */
  readonly aliases?: readonly string[];
}

/** An object with a fixed set of fields; unknown keys are errors. */
export interface ObjectNode {
  readonly t: "object";
  readonly fields: Readonly<Record<string, Field>>;
  /** Called after the fields are validated, to derive canonical fields; may throw a problem string. */
  readonly finish?: (value: Record<string, unknown>) => Record<string, unknown> | string;
}

/**
 * An externally tagged union: `{ kind: body }` (exactly one key), or a bare string for body-less kinds.
 * `noun` names the union in messages ("store kind").
 */
export interface VariantNode {
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
export interface TaggedNode {
  readonly t: "tagged";
  readonly tag: string;
  readonly variants: Readonly<Record<string, ObjectNode>>;
}

type FieldInput = Node | Field;

function isField(x: FieldInput): x is Field {
  return "node" in x;
}

/** Schema builders. A bare node in an object's field table is a required field. */
export const s = {
  string: (): Node => ({ t: "string" }),
  /** A non-negative integer (strings of digits accepted). */
  int: (): Node => ({ t: "number", integer: true, signed: false }),
  /** Any number (e.g. retry delays). */
  float: (): Node => ({ t: "number", integer: false, signed: true }),
  bool: (): Node => ({ t: "bool" }),
  /** A data size: bytes, or `"10gb"`; normalized to bytes. */
  size: (): Node => ({ t: "size" }),
  /** A duration: seconds, or `"1h2m"`; normalized to seconds. */
  duration: (): Node => ({ t: "duration", unit: "s", signed: false }),
  /** A duration allowed to be negative (e.g. `-1` disables a periodic task). */
  signedDuration: (): Node => ({ t: "duration", unit: "s", signed: true }),
  /** A duration held in milliseconds: numbers as is, `"2s"` becomes 2000. */
  durationMs: (): Node => ({ t: "duration", unit: "ms", signed: false }),
  enum: (...values: string[]): Node => ({ t: "enum", values }),
  array: (of: Node): Node => ({ t: "array", of }),
  /** An object with free keys (`what` names a key in messages). */
  map: (of: Node, what = "key"): Node => ({ t: "map", of, what }),
  ref: (to: RefTarget): Node => ({ t: "ref", to }),
  lazy: (get: () => Node): Node => ({ t: "lazy", get }),
  any: (): Node => ({ t: "any" }),
  /** A directory Cairn writes (created at start when missing); relative to the start directory. */
  dir: (): Node => ({ t: "path", role: "dir" }),
  /** A file Cairn reads (must exist at start); relative to the start directory. */
  file: (): Node => ({ t: "path", role: "file" }),
  /** Any other path (resolved against the start directory, not checked). */
  path: (): Node => ({ t: "path", role: "other" }),
  /** Parsed but not implemented by Cairn: refused when present. */
  unsupported: (hint?: string): Node => (hint ? { t: "unsupported", hint } : { t: "unsupported" }),
  optional: (node: Node, aliases?: readonly string[]): Field => ({
    node,
    required: false,
    ...(aliases ? { aliases } : {}),
  }),
  required: (node: Node, aliases?: readonly string[]): Field => ({
    node,
    required: true,
    ...(aliases ? { aliases } : {}),
  }),
  withDefault: (node: Node, value: unknown): Field => ({ node, required: false, default: value }),
  object: (
    fields: Record<string, FieldInput>,
    finish?: ObjectNode["finish"],
  ): ObjectNode => {
    const out: Record<string, Field> = {};
    for (const [k, v] of Object.entries(fields)) out[k] = isField(v) ? v : { node: v, required: true };
    return finish ? { t: "object", fields: out, finish } : { t: "object", fields: out };
  },
  variant: (
    noun: string,
    variants: Record<string, Node | null>,
    legacy?: VariantNode["legacy"],
  ): VariantNode => (legacy ? { t: "variant", noun, variants, legacy } : { t: "variant", noun, variants }),
  tagged: (tag: string, variants: Record<string, ObjectNode>): TaggedNode => ({ t: "tagged", tag, variants }),
  /** Top-level named specs: `[{ name, <kind>: {...} }]` or the older `{ NAME: { <kind>: {...} } }`. */
  namedList: (of: VariantNode): Node => ({ t: "named_list", of }),
  /** Per-instance service configs: `[{ instance_name?, ... }]` or the older `{ INSTANCE: {...} }`. */
  instanceList: (of: ObjectNode): Node => ({ t: "instance_list", of }),
};

/** Merges field tables (for NativeLink's `#[serde(flatten)]`). */
export function extend(base: ObjectNode, fields: Record<string, FieldInput>): ObjectNode {
  const more = s.object(fields);
  return { t: "object", fields: { ...base.fields, ...more.fields } };
}
