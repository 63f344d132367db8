/**
 * Walks a parsed JSON5 value against a schema node (see `schema.ts`), expanding `${VAR}`, converting sizes and
 * durations, rejecting unknown keys with a did-you-mean, and returning the canonical value. Every name that
 * refers to a store or scheduler is collected for the cross-reference pass.
 *
 * @example
 * ```ts
 * import JSON5 from "json5";
 * import { type Reference, validate } from "./validate.ts";
 * import { ROOT } from "./nativelink_schema.ts";
 * const text = `{ stores: [{ name: "CAS", memory: {} }], servers: [] }`;
 * const refs: Reference[] = [];
 * const canonical = validate(ROOT, JSON5.parse(text), "", {
 *   source: "cas.json5",
 *   env: Deno.env.toObject(),
 *   refs,
 *   warn: console.warn,
 *   baseDir: Deno.cwd(),
 *   paths: [],
 * });
 * ```
 * @module
 */
import { ConfigError } from "./config_error.ts";
import { suggestion } from "./did_you_mean.ts";
import { type EnvSource, expandEnv } from "./env_expand.ts";
import { isAbsolute, resolve } from "node:path";
import type { Field, Node, ObjectNode, PathNode, RefTarget, TaggedNode, VariantNode } from "./schema.ts";
import { parseDuration, parseSize } from "./units.ts";

/** A name in the config that must resolve to a store or scheduler. */
export interface Reference {
  readonly to: RefTarget;
  readonly name: string;
  /** JSON path of the name, for messages. */
  readonly path: string;
}

/** A path field of the config, resolved (for the start-time checks). */
export interface PathField {
  /** JSON path of the field, for messages. */
  readonly path: string;
  /** The absolute path. */
  readonly value: string;
  readonly role: PathNode["role"];
}

/** State of one validation run. */
export interface ValidateContext {
  readonly source: string;
  readonly env: EnvSource;
  /** Collected references (appended to). */
  readonly refs: Reference[];
  /** Receives notes about accepted-but-misplaced or deprecated input. */
  readonly warn: (message: string) => void;
  /** Absolute directory that relative paths are resolved against (the directory Cairn was started in). */
  readonly baseDir: string;
  /** Collected path fields (appended to). */
  readonly paths: PathField[];
}

type Obj = Record<string, unknown>;

/** `a.b`, `a["odd key"]`, or the key alone at the root. */
export function childPath(path: string, key: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return path === "" ? key : `${path}.${key}`;
  return `${path}[${JSON.stringify(key)}]`;
}

function isObject(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `string ${JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}

function fail(ctx: ValidateContext, path: string, problem: string): never {
  throw new ConfigError(ctx.source, path, problem);
}

function expand(ctx: ValidateContext, path: string, text: string): string {
  const r = expandEnv(text, ctx.env);
  if (r.ok) return r.value;
  return fail(
    ctx,
    path,
    `environment variable ${r.missing} is not set (write \${${r.missing}:-default} to give a default)`,
  );
}

/** Validates `value` against `node` at `path`; returns the canonical value. Throws {@linkcode ConfigError}. */
export function validate(node: Node, value: unknown, path: string, ctx: ValidateContext): unknown {
  switch (node.t) {
    case "any":
      return value;
    case "lazy":
      return validate(node.get(), value, path, ctx);
    case "string":
      if (typeof value !== "string") fail(ctx, path, `expected a string, got ${describe(value)}`);
      return expand(ctx, path, value);
    case "path": {
      if (typeof value !== "string") fail(ctx, path, `expected a path, got ${describe(value)}`);
      const text = expand(ctx, path, value);
      if (text === "") fail(ctx, path, "expected a path, got an empty string");
      const absolute = isAbsolute(text) ? resolve(text) : resolve(ctx.baseDir, text);
      ctx.paths.push({ path, value: absolute, role: node.role });
      return absolute;
    }
    case "unsupported":
      return fail(ctx, path, `not supported by Cairn yet${node.hint ? ` (${node.hint})` : ""}`);
    case "ref": {
      if (typeof value !== "string") fail(ctx, path, `expected a ${node.to} name, got ${describe(value)}`);
      const name = expand(ctx, path, value);
      ctx.refs.push({ to: node.to, name, path });
      return name;
    }
    case "number": {
      const what = node.integer ? "a whole number" : "a number";
      let n = value;
      if (typeof value === "string") {
        const text = expand(ctx, path, value).trim();
        n = /^-?(\d+(\.\d*)?|\.\d+)$/.test(text) ? Number(text) : NaN;
        if (Number.isNaN(n)) fail(ctx, path, `expected ${what}, got ${describe(text)}`);
      }
      if (typeof n !== "number" || !Number.isFinite(n)) {
        return fail(ctx, path, `expected ${what}, got ${describe(value)}`);
      }
      if (node.integer && !Number.isInteger(n)) fail(ctx, path, `expected ${what}, got ${n}`);
      if (!node.signed && n < 0) fail(ctx, path, `expected ${what} (not negative), got ${n}`);
      return n;
    }
    case "bool": {
      if (typeof value === "boolean") return value;
      if (typeof value === "string") {
        const text = expand(ctx, path, value).trim();
        if (text === "true") return true;
        if (text === "false") return false;
        return fail(ctx, path, `expected true or false, got ${describe(text)}`);
      }
      return fail(ctx, path, `expected true or false, got ${describe(value)}`);
    }
    case "size": {
      const what = `expected a size (bytes, or text like "10gb", "500mb", "1kib")`;
      if (typeof value === "number") {
        if (!Number.isInteger(value) || value < 0) fail(ctx, path, `${what}, got ${value}`);
        return value;
      }
      if (typeof value !== "string") return fail(ctx, path, `${what}, got ${describe(value)}`);
      const text = expand(ctx, path, value);
      const bytes = parseSize(text);
      if (bytes === undefined) fail(ctx, path, `${what}, got ${describe(text)}`);
      return bytes;
    }
    case "duration": {
      const what = `expected a duration (seconds, or text like "30s", "1h2m", "1.5s")`;
      let seconds: number | undefined;
      if (typeof value === "number") {
        if (!Number.isFinite(value)) fail(ctx, path, `${what}, got ${value}`);
        if (value < 0 && !node.signed) fail(ctx, path, `${what} (not negative), got ${value}`);
        return value;
      }
      if (typeof value !== "string") return fail(ctx, path, `${what}, got ${describe(value)}`);
      const text = expand(ctx, path, value).trim();
      const negative = node.signed && text.startsWith("-");
      seconds = parseDuration(negative ? text.slice(1) : text);
      if (seconds === undefined) return fail(ctx, path, `${what}, got ${describe(text)}`);
      if (negative) seconds = -seconds;
      return node.unit === "ms" ? Math.round(seconds * 1000) : seconds;
    }
    case "enum": {
      if (typeof value !== "string") {
        return fail(ctx, path, `expected one of ${node.values.join(", ")}, got ${describe(value)}`);
      }
      const text = expand(ctx, path, value);
      if (!node.values.includes(text)) {
        fail(
          ctx,
          path,
          `expected one of ${node.values.join(", ")}, got ${describe(text)}${suggestion(text, node.values)}`,
        );
      }
      return text;
    }
    case "array": {
      if (!Array.isArray(value)) return fail(ctx, path, `expected an array, got ${describe(value)}`);
      return value.map((item, i) => validate(node.of, item, `${path}[${i}]`, ctx));
    }
    case "map": {
      if (!isObject(value)) {
        return fail(ctx, path, `expected an object of ${node.what} → value, got ${describe(value)}`);
      }
      const out: Obj = {};
      for (const [k, v] of Object.entries(value)) out[k] = validate(node.of, v, childPath(path, k), ctx);
      return out;
    }
    case "object":
      return validateObject(node, value, path, ctx);
    case "variant":
      return validateVariant(node, value, path, ctx);
    case "tagged":
      return validateTagged(node, value, path, ctx);
    case "named_list":
      return validateNamedList(node.of, value, path, ctx);
    case "instance_list":
      return validateInstanceList(node.of, value, path, ctx);
    case "bytestream":
      return validateBytestream(node.of, node.legacy, value, path, ctx);
  }
}

function validateObject(node: ObjectNode, value: unknown, path: string, ctx: ValidateContext): Obj {
  if (!isObject(value)) return fail(ctx, path, `expected an object, got ${describe(value)}`);
  const byAlias = new Map<string, string>();
  for (const [name, field] of Object.entries(node.fields)) {
    for (const alias of field.aliases ?? []) byAlias.set(alias, name);
  }
  const out: Obj = {};
  const seenAs = new Map<string, string>();
  for (const [key, v] of Object.entries(value)) {
    const name = key in node.fields ? key : byAlias.get(key);
    const here = childPath(path, key);
    if (name === undefined) {
      fail(ctx, here, `unknown field${suggestion(key, [...Object.keys(node.fields), ...byAlias.keys()])}`);
    }
    const earlier = seenAs.get(name);
    if (earlier !== undefined) fail(ctx, here, `duplicate of ${earlier} (both set ${name})`);
    seenAs.set(name, key);
    out[name] = validate((node.fields[name] as Field).node, v, here, ctx);
  }
  for (const [name, field] of Object.entries(node.fields)) {
    if (name in out) continue;
    if (field.required) fail(ctx, path, `missing field ${name}`);
    if (field.default !== undefined) out[name] = structuredClone(field.default);
  }
  if (!node.finish) return out;
  const finished = node.finish(out);
  if (typeof finished === "string") return fail(ctx, path, finished);
  return finished;
}

function validateVariant(node: VariantNode, value: unknown, path: string, ctx: ValidateContext): unknown {
  const kinds = Object.keys(node.variants);
  const valid = `valid ${node.noun}s: ${kinds.join(", ")}`;
  if (typeof value === "string") {
    const kind = expand(ctx, path, value);
    if (node.variants[kind] === null) return kind;
    if (kind in node.variants) {
      return fail(ctx, path, `${node.noun} ${kind} needs settings: write { ${kind}: {...} }`);
    }
    return fail(
      ctx,
      path,
      `unknown ${node.noun} ${JSON.stringify(kind)}${suggestion(kind, kinds)}; ${valid}`,
    );
  }
  if (!isObject(value)) return fail(ctx, path, `expected { <${node.noun}>: {...} }, got ${describe(value)}`);
  const keys = Object.keys(value);
  if (keys.length === 0) return fail(ctx, path, `missing ${node.noun}; ${valid}`);
  if (keys.length > 1) {
    const hoisted = liftStrayFields(node, value, path, ctx);
    if (hoisted) return validateVariant(node, hoisted, path, ctx);
    const unknown = keys.find((k) => !(k in node.variants) && !(k in (node.legacy ?? {})));
    if (unknown !== undefined) {
      fail(ctx, childPath(path, unknown), `unknown ${node.noun}${suggestion(unknown, kinds)}; ${valid}`);
    }
    return fail(ctx, path, `expected exactly one ${node.noun}, got ${keys.join(", ")}`);
  }
  const key = keys[0]!;
  const here = childPath(path, key);
  let kind = key;
  let body = value[key];
  const legacy = node.legacy?.[key];
  if (legacy) {
    if (!isObject(body)) return fail(ctx, here, `expected an object, got ${describe(body)}`);
    [kind, body] = legacy(body);
  }
  if (!(kind in node.variants)) {
    return fail(ctx, here, `unknown ${node.noun}${suggestion(key, kinds)}; ${valid}`);
  }
  const bodyNode = node.variants[kind];
  if (bodyNode === null || bodyNode === undefined) {
    if (body === null || (isObject(body) && Object.keys(body).length === 0)) return kind;
    return fail(ctx, here, `${node.noun} ${kind} takes no settings, got ${describe(body)}`);
  }
  return { [kind]: validate(bodyNode, body, here, ctx) };
}

/**
 * NativeLink's own production config writes some fields of a kind beside the kind key
 * (`{ verify: { backend }, verify_size: true }`). When every extra key is a field of the one kind present,
 * move them inside (with a warning); otherwise `undefined`.
 */
function liftStrayFields(node: VariantNode, value: Obj, path: string, ctx: ValidateContext): Obj | undefined {
  const kinds = Object.keys(value).filter((k) => k in node.variants || k in (node.legacy ?? {}));
  if (kinds.length !== 1) return undefined;
  const kind = kinds[0]!;
  const body = value[kind];
  const bodyNode = node.variants[kind] ?? node.variants[node.legacy?.[kind]?.({})[0] ?? ""];
  if (!isObject(body) || !bodyNode || bodyNode.t !== "object") return undefined;
  const extras = Object.keys(value).filter((k) => k !== kind);
  if (!extras.every((k) => k in bodyNode.fields && !(k in body))) return undefined;
  for (const k of extras) {
    ctx.warn(`${childPath(path, k)}: belongs inside ${kind}; read as ${childPath(childPath(path, kind), k)}`);
  }
  const merged: Obj = { ...body };
  for (const k of extras) merged[k] = value[k];
  return { [kind]: merged };
}

function validateTagged(node: TaggedNode, value: unknown, path: string, ctx: ValidateContext): Obj {
  if (!isObject(value)) return fail(ctx, path, `expected an object, got ${describe(value)}`);
  const kinds = Object.keys(node.variants);
  const here = childPath(path, node.tag);
  const raw = value[node.tag];
  if (raw === undefined) return fail(ctx, path, `missing field ${node.tag} (one of ${kinds.join(", ")})`);
  if (typeof raw !== "string") {
    return fail(ctx, here, `expected one of ${kinds.join(", ")}, got ${describe(raw)}`);
  }
  const kind = expand(ctx, here, raw);
  const body = node.variants[kind];
  if (!body) {
    return fail(
      ctx,
      here,
      `unknown ${node.tag} ${JSON.stringify(kind)}${suggestion(kind, kinds)}; valid: ${kinds.join(", ")}`,
    );
  }
  const { [node.tag]: _tag, ...rest } = value;
  return { [node.tag]: kind, ...validateObject(body, rest, path, ctx) };
}

function validateNamedList(of: VariantNode, value: unknown, path: string, ctx: ValidateContext): Obj[] {
  const noun = of.noun.replace(/ kind$/, "");
  const out: Obj[] = [];
  const seen = new Set<string>();
  const add = (name: string, spec: unknown, at: string) => {
    if (seen.has(name)) fail(ctx, at, `duplicate ${noun} name ${JSON.stringify(name)}`);
    seen.add(name);
    out.push({ name, ...(validateVariant(of, spec, at, ctx) as Obj) });
  };
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      const at = `${path}[${i}]`;
      if (!isObject(item)) {
        return fail(ctx, at, `expected { name, <${of.noun}>: {...} }, got ${describe(item)}`);
      }
      const { name, ...spec } = item;
      if (name === undefined) return fail(ctx, at, `missing field name`);
      if (typeof name !== "string") {
        return fail(ctx, childPath(at, "name"), `expected a string, got ${describe(name)}`);
      }
      add(expand(ctx, childPath(at, "name"), name), spec, at);
    });
    return out;
  }
  if (isObject(value)) {
    for (const [name, spec] of Object.entries(value)) add(name, spec, childPath(path, name));
    return out;
  }
  return fail(ctx, path, `expected an array of { name, <${of.noun}>: {...} }, got ${describe(value)}`);
}

function withInstanceName(of: ObjectNode): ObjectNode {
  const instance: Field = { node: { t: "string" }, required: false, default: "" };
  return of.finish
    ? { t: "object", fields: { instance_name: instance, ...of.fields }, finish: of.finish }
    : { t: "object", fields: { instance_name: instance, ...of.fields } };
}

function validateInstanceList(of: ObjectNode, value: unknown, path: string, ctx: ValidateContext): Obj[] {
  const out: Obj[] = [];
  const seen = new Set<string>();
  const add = (entry: Obj, at: string) => {
    const name = entry.instance_name as string;
    if (seen.has(name)) fail(ctx, at, `duplicate instance_name ${JSON.stringify(name)}`);
    seen.add(name);
    out.push(entry);
  };
  if (Array.isArray(value)) {
    const node = withInstanceName(of);
    value.forEach((item, i) => add(validateObject(node, item, `${path}[${i}]`, ctx), `${path}[${i}]`));
    return out;
  }
  if (isObject(value)) {
    for (const [instance, cfg] of Object.entries(value)) {
      const at = childPath(path, instance);
      add({ instance_name: instance, ...validateObject(of, cfg, at, ctx) }, at);
    }
    return out;
  }
  return fail(
    ctx,
    path,
    `expected an array of { instance_name, ... } (or an object keyed by instance name), got ${
      describe(value)
    }`,
  );
}

function validateBytestream(
  of: ObjectNode,
  legacy: ObjectNode,
  value: unknown,
  path: string,
  ctx: ValidateContext,
): Obj[] {
  const isMapOfObjects = isObject(value) && Object.keys(value).length > 0 &&
    Object.values(value).every(isObject) &&
    !("cas_stores" in value);
  if (Array.isArray(value) || isMapOfObjects) return validateInstanceList(of, value, path, ctx);
  const old = validateObject(legacy, value, path, ctx);
  const { cas_stores: stores, max_decoding_message_size: _ignored, ...shared } = old;
  return Object.entries(stores as Record<string, string>).map(([instance, store]) => ({
    instance_name: instance,
    cas_store: store,
    ...shared,
  }));
}
