/**
 * The `property_modifier` scheduler: rewrites an action's platform properties, in order, before handing it to
 * the nested scheduler. `add` sets a property (replacing any of that name), `remove` drops every property of a
 * name, `replace` renames (and optionally re-values) properties, optionally only those with a given value.
 *
 * @example
 * ```ts
 * import { PropertyModifierScheduler } from "./property_modifier_scheduler.ts";
 * import { SimpleScheduler } from "./simple_scheduler.ts";
 * const inner = new SimpleScheduler({ supported_platform_properties: { os: "exact" } });
 * const s = new PropertyModifierScheduler([{ add: { name: "os", value: "linux" } }, { remove: "gpu" }], inner);
 * await s.close();
 * ```
 * @module
 */
import type { PropertyModification } from "./scheduler_spec.ts";
import type {
  ActionHandle,
  ActionRequest,
  ActionScheduler,
  OperationState,
  PlatformProperty,
} from "./types.ts";

/** Applies modifications to a platform, in order; the result is sorted by name then value, as REAPI wants. */
export function modifyPlatform(
  platform: readonly PlatformProperty[],
  modifications: readonly PropertyModification[],
): PlatformProperty[] {
  let props = [...platform];
  for (const m of modifications) {
    if ("add" in m) {
      props = props.filter((p) => p.name !== m.add.name);
      props.push({ name: m.add.name, value: m.add.value });
    } else if ("remove" in m) {
      props = props.filter((p) => p.name !== m.remove);
    } else {
      const r = m.replace;
      props = props.map((p) =>
        p.name === r.name && (r.value === undefined || p.value === r.value)
          ? { name: r.new_name, value: r.new_value ?? p.value }
          : p
      );
    }
  }
  return props.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : a.value < b.value ? -1 : 1);
}

/** Wraps a scheduler, rewriting platform properties of submitted actions. */
export class PropertyModifierScheduler implements ActionScheduler {
  readonly #modifications: readonly PropertyModification[];
  readonly #inner: ActionScheduler;

  constructor(modifications: readonly PropertyModification[], inner: ActionScheduler) {
    this.#modifications = modifications;
    this.#inner = inner;
  }

  addAction(request: ActionRequest): Promise<ActionHandle> {
    return this.#inner.addAction({
      ...request,
      platform: modifyPlatform(request.platform, this.#modifications),
    });
  }

  findOperation(name: string): Promise<OperationState | undefined> {
    return this.#inner.findOperation(name);
  }

  waitOperation(name: string): Promise<ActionHandle | undefined> {
    return this.#inner.waitOperation(name);
  }

  cancelOperation(name: string): Promise<boolean> {
    return this.#inner.cancelOperation(name);
  }

  listOperations(): Promise<OperationState[]> {
    return this.#inner.listOperations();
  }

  deleteOperation(name: string): Promise<boolean> {
    return this.#inner.deleteOperation(name);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
