/**
 * Platform property matching (NativeLink's `supported_platform_properties` semantics).
 *
 * - `minimum`: numeric; the worker must offer at least the requested amount. While an action runs, its
 *   amount is subtracted from the worker's available value, and restored when it ends.
 * - `exact`: the worker must offer exactly this value.
 * - `priority`: passed to the worker; the worker must declare the property (any value).
 * - `ignore`: never restricts.
 *
 * Properties not listed are rejected (INVALID_ARGUMENT) for actions and workers alike.
 *
 * @example
 * ```ts
 * import { PropertyMatcher } from "./property_matcher.ts";
 * const m = new PropertyMatcher({ cpu_count: "minimum", os: "exact" });
 * const needs = m.parseRequirements([{ name: "cpu_count", value: "2" }]);
 * const offer = m.parseOffer([{ name: "cpu_count", value: "4" }, { name: "os", value: "linux" }]);
 * m.satisfies(needs, offer, "available"); // true
 * ```
 * @module
 */
import { CairnError, Code } from "../util/error.ts";
import type { PropertyType } from "./scheduler_spec.ts";
import type { PlatformProperty } from "./types.ts";

/** One requirement of an action. */
export interface Requirement {
  readonly name: string;
  readonly type: PropertyType;
  readonly value: string;
  /** Parsed value of a `minimum` requirement (else 0). */
  readonly amount: number;
}

/** What a worker offers: `minimum` totals (with what is available now) and values of the other kinds. */
export interface Offer {
  readonly totals: Map<string, number>;
  readonly available: Map<string, number>;
  readonly values: Map<string, readonly string[]>;
}

const PROPERTY_TYPES: readonly PropertyType[] = ["minimum", "exact", "priority", "ignore"];

function parseAmount(name: string, value: string, who: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new CairnError(
      Code.InvalidArgument,
      `${who} platform property "${name}" has value "${value}": a "minimum" property needs a non-negative integer`,
    );
  }
  return n;
}

/** Parses and matches platform properties against one `supported_platform_properties` table. */
export class PropertyMatcher {
  readonly #types: ReadonlyMap<string, PropertyType>;

  constructor(supported: Readonly<Record<string, PropertyType>> = {}) {
    const types = new Map<string, PropertyType>();
    for (const [name, type] of Object.entries(supported)) {
      if (!PROPERTY_TYPES.includes(type)) {
        throw new CairnError(
          Code.InvalidArgument,
          `Cannot create scheduler: supported_platform_properties.${name} is "${type}", expected one of ${
            PROPERTY_TYPES.join(", ")
          }`,
        );
      }
      types.set(name, type);
    }
    this.#types = types;
  }

  /** The match type of a property, or undefined when not supported. */
  typeOf(name: string): PropertyType | undefined {
    return this.#types.get(name);
  }

  #unknown(names: string[], who: string): CairnError {
    const known = [...this.#types.keys()].sort().join(", ") || "none";
    return new CairnError(
      Code.InvalidArgument,
      `${who} names platform propert${names.length === 1 ? "y" : "ies"} ${
        names.map((n) => `"${n}"`).join(", ")
      } not in the scheduler's supported_platform_properties (known: ${known})`,
    );
  }

  /** Parses an action's platform; INVALID_ARGUMENT for unknown names or non-numeric `minimum` values. */
  parseRequirements(platform: readonly PlatformProperty[]): Requirement[] {
    const out: Requirement[] = [];
    const unknown: string[] = [];
    for (const p of platform) {
      const type = this.#types.get(p.name);
      if (type === undefined) {
        unknown.push(p.name);
        continue;
      }
      const amount = type === "minimum" ? parseAmount(p.name, p.value, "Action") : 0;
      out.push({ name: p.name, type, value: p.value, amount });
    }
    if (unknown.length > 0) throw this.#unknown(unknown, "Action");
    return out;
  }

  /** Parses a worker's properties; INVALID_ARGUMENT for unknown names or bad `minimum` values. */
  parseOffer(properties: readonly PlatformProperty[]): Offer {
    const totals = new Map<string, number>();
    const values = new Map<string, string[]>();
    const unknown: string[] = [];
    for (const p of properties) {
      const type = this.#types.get(p.name);
      if (type === undefined) {
        unknown.push(p.name);
      } else if (type === "minimum") {
        if (totals.has(p.name)) {
          throw new CairnError(Code.InvalidArgument, `Worker declares "minimum" property "${p.name}" twice`);
        }
        totals.set(p.name, parseAmount(p.name, p.value, "Worker"));
      } else {
        const list = values.get(p.name) ?? [];
        list.push(p.value);
        values.set(p.name, list);
      }
    }
    if (unknown.length > 0) throw this.#unknown(unknown, "Worker");
    return { totals, available: new Map(totals), values };
  }

  /** True when `offer` meets one requirement; `available` checks the current minimum values, `total` capacity. */
  meets(req: Requirement, offer: Offer, mode: "available" | "total"): boolean {
    switch (req.type) {
      case "ignore":
        return true;
      case "priority":
        return offer.values.has(req.name);
      case "exact":
        return offer.values.get(req.name)?.includes(req.value) ?? false;
      case "minimum": {
        const have = (mode === "available" ? offer.available : offer.totals).get(req.name);
        return have !== undefined && have >= req.amount;
      }
    }
  }

  /** True when `offer` meets every requirement. */
  satisfies(reqs: readonly Requirement[], offer: Offer, mode: "available" | "total"): boolean {
    for (const r of reqs) if (!this.meets(r, offer, mode)) return false;
    return true;
  }

  /** Subtracts (sign -1) or restores (sign +1) an action's `minimum` amounts on a worker. */
  adjust(reqs: readonly Requirement[], offer: Offer, sign: 1 | -1): void {
    for (const r of reqs) {
      if (r.type !== "minimum" || r.amount === 0) continue;
      const have = offer.available.get(r.name);
      if (have !== undefined) offer.available.set(r.name, have + sign * r.amount);
    }
  }

  /**
   * Describes why no offer among `offers` can ever satisfy `reqs`: the requirements no single offer meets,
   * or all of them when each is met somewhere but never together.
   */
  explainUnmatched(reqs: readonly Requirement[], offers: readonly Offer[]): string {
    const describe = (r: Requirement) => `${r.name}=${r.value} (${r.type})`;
    const lonely = reqs.filter((r) => !offers.some((o) => this.meets(r, o, "total")));
    const list = lonely.length > 0 ? lonely : reqs.filter((r) => r.type !== "ignore");
    return list.map(describe).join(", ");
  }
}
