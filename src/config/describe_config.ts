/**
 * A human-readable picture of a validated config: the store trees (kinds and key settings), schedulers,
 * workers and servers (listener + services per instance). Printed by `main.ts --check-config FILE`.
 *
 * @example
 * ```ts
 * import { describeConfig } from "./describe_config.ts";
 * import { loadConfig } from "./load_config.ts";
 * console.log(describeConfig(await loadConfig("config/local.json5")));
 * // Stores:
 * //   CAS_MAIN_STORE: verify (verify_size=true, verify_hash=true)
 * //     backend: filesystem (content_path=".data/cas/content", ...)
 * ```
 * @module
 */
import {
  GLOBAL,
  LISTENER_KINDS,
  SCHEDULER_KINDS,
  SERVICES,
  STORE_KINDS,
  WORKER_KINDS,
} from "./nativelink_schema.ts";
import type { Node, VariantNode } from "./schema.ts";
import { specKind } from "./spec_kind.ts";
import type { CairnConfig } from "./types.ts";
import { formatDuration, formatSize } from "./units.ts";

interface Collected {
  settings: string[];
  children: [label: string, spec: object, kinds: VariantNode][];
}

function join(prefix: string, key: string): string {
  return prefix === "" ? key : `${prefix}.${key}`;
}

function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
}

/** Settings whose values are credentials (or their hashes): never printed. */
const SECRET = /token|password|authorization|secret/i;

function collect(node: Node, value: unknown, prefix: string, out: Collected): void {
  if (typeof value === "string" && SECRET.test(prefix.slice(prefix.lastIndexOf(".") + 1))) {
    out.settings.push(`${prefix}=(redacted)`);
    return;
  }
  switch (node.t) {
    case "lazy": {
      const target = node.get();
      if (target.t === "variant" && typeof value === "object" && value !== null) {
        out.children.push([prefix, value, target]);
      } else collect(target, value, prefix, out);
      return;
    }
    case "object": {
      for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
        const field = node.fields[key];
        if (field) collect(field.node, v, join(prefix, key), out);
      }
      return;
    }
    case "tagged": {
      const body = value as Record<string, unknown>;
      const kind = String(body[node.tag]);
      out.settings.push(`${join(prefix, node.tag)}=${kind}`);
      const { [node.tag]: _tag, ...rest } = body;
      const variant = node.variants[kind];
      if (variant) collect(variant, rest, prefix, out);
      return;
    }
    case "array":
      if (["string", "number", "bool", "enum", "ref"].includes(node.of.t)) {
        out.settings.push(`${prefix}=${JSON.stringify(value)}`);
        return;
      }
      (value as unknown[]).forEach((item, i) => collect(node.of, item, `${prefix}[${i}]`, out));
      return;
    case "variant": {
      if (typeof value === "string") {
        out.settings.push(`${prefix}=${value}`);
        return;
      }
      const [kind, body] = specKind(value as object);
      const inner = node.variants[kind];
      if (inner && inner.t !== "object") {
        out.settings.push(`${join(prefix, kind)}=${show(body)}`);
        return;
      }
      const sub: Collected = { settings: [], children: [] };
      if (inner) collect(inner, body, "", sub);
      out.settings.push(`${prefix}=${kind}${sub.settings.length ? `(${sub.settings.join(", ")})` : ""}`);
      return;
    }
    case "map": {
      const entries = Object.entries(value as Record<string, unknown>).map(([k, v]) => {
        if (SECRET.test(k)) return `${k}: (redacted)`;
        const sub: Collected = { settings: [], children: [] };
        collect(node.of, v, "", sub);
        return `${k}: ${sub.settings.join(" ").replace(/^\.?=?/, "")}`;
      });
      out.settings.push(`${prefix}={${entries.join(", ")}}`);
      return;
    }
    case "size":
      out.settings.push(`${prefix}=${formatSize(value as number)}`);
      return;
    case "enum":
      out.settings.push(`${prefix}=${String(value)}`);
      return;
    case "duration":
      out.settings.push(`${prefix}=${node.unit === "ms" ? `${value}ms` : formatDuration(value as number)}`);
      return;
    default:
      out.settings.push(`${prefix}=${show(value)}`);
  }
}

function specTree(spec: object, kinds: VariantNode, label: string, indent: string, lines: string[]): void {
  const [kind, body] = specKind(spec);
  if (kind === "ref_store") {
    lines.push(`${indent}${label}ref_store → ${(body as { name: string }).name}`);
    return;
  }
  const out: Collected = { settings: [], children: [] };
  const node = kinds.variants[kind];
  if (node) collect(node, body, "", out);
  lines.push(`${indent}${label}${kind}${out.settings.length ? ` (${out.settings.join(", ")})` : ""}`);
  for (const [childLabel, child, childKinds] of out.children) {
    specTree(child, childKinds, `${childLabel}: `, `${indent}  `, lines);
  }
}

function settingsOf(node: Node, value: unknown): string[] {
  const out: Collected = { settings: [], children: [] };
  collect(node, value, "", out);
  return out.settings;
}

/** Renders the resolved config graph as indented text. */
export function describeConfig(config: CairnConfig): string {
  const lines: string[] = [];
  lines.push(`Stores (${config.stores.length}):`);
  for (const { name, ...spec } of config.stores) specTree(spec, STORE_KINDS, `${name}: `, "  ", lines);
  lines.push(`Schedulers (${config.schedulers.length}):`);
  for (const { name, ...spec } of config.schedulers) {
    specTree(spec, SCHEDULER_KINDS, `${name}: `, "  ", lines);
  }
  lines.push(`Workers (${config.workers.length}):`);
  config.workers.forEach((worker, i) => {
    const [kind, body] = specKind(worker) as [string, { name?: string }];
    lines.push(`  workers[${i}]: ${kind}${body.name ? ` ${JSON.stringify(body.name)}` : ""}`);
    for (const setting of settingsOf(WORKER_KINDS.variants[kind]!, body)) lines.push(`    ${setting}`);
  });
  lines.push(`Servers (${config.servers.length}):`);
  config.servers.forEach((server, i) => {
    const [kind, listener] = specKind(server.listener);
    const named = server.name ? ` ${JSON.stringify(server.name)}` : "";
    const listenerSettings = settingsOf(LISTENER_KINDS.variants[kind]!, listener);
    lines.push(`  servers[${i}]${named}: ${kind} ${listenerSettings.join(", ")}`);
    const services = Object.entries(server.services);
    if (services.length === 0) lines.push("    (no services)");
    for (const [service, value] of services) {
      const node = SERVICES.fields[service]?.node;
      if (Array.isArray(value)) {
        const entries = value.map((entry: Record<string, unknown>) => {
          const { instance_name: instance, ...rest } = entry;
          const fields = node?.t === "instance_list" || node?.t === "bytestream" ? node.of : undefined;
          const settings = fields ? settingsOf(fields, rest) : [];
          return `instance ${JSON.stringify(instance)}${settings.length ? ` (${settings.join(", ")})` : ""}`;
        });
        lines.push(
          `    ${service}: ${entries.length ? entries.join("; ") : "enabled (no per-instance settings)"}`,
        );
      } else {
        const settings = node ? settingsOf(node, value) : [];
        lines.push(`    ${service}${settings.length ? `: ${settings.join(", ")}` : ""}`);
      }
    }
    if (server.auth) {
      const users = server.auth.users.map((u) => JSON.stringify(u.name)).join(", ") || "(none)";
      lines.push(`    auth: anonymous clients ${server.auth.anonymous}; users ${users}`);
    }
  });
  if (config.global) lines.push(`Global: ${settingsOf(GLOBAL, config.global).join(", ")}`);
  return lines.join("\n");
}
