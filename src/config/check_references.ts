/**
 * The cross-reference pass: every store/scheduler name used in the config exists, `ref_store` chains have no
 * cycle, and no instance serves CAS and AC from the same store (NativeLink rejects that too).
 *
 * @example
 * ```ts
 * import { checkReferences } from "./check_references.ts";
 * import { parseConfig } from "./load_config.ts";
 * import type { Reference } from "./validate.ts";
 * const config = parseConfig(`{ stores: [{ name: "CAS", memory: {} }], servers: [] }`, "cas.json5", {});
 * const refs: Reference[] = [{ to: "store", name: "CAS", path: "servers[0].services.cas[0].cas_store" }];
 * checkReferences(config, refs, "cas.json5"); // throws ConfigError on a dangling name
 * ```
 * @module
 */
import { ConfigError } from "./config_error.ts";
import { didYouMean } from "./did_you_mean.ts";
import type { Reference } from "./validate.ts";
import type { CairnConfig } from "./types.ts";
import { storeRefsIn } from "./walk_config.ts";

/** Throws a {@linkcode ConfigError} for the first broken reference. */
export function checkReferences(config: CairnConfig, refs: readonly Reference[], source: string): void {
  const names = {
    store: config.stores.map((store) => store.name),
    scheduler: config.schedulers.map((scheduler) => scheduler.name),
  };
  for (const ref of refs) {
    const known = names[ref.to];
    if (known.includes(ref.name)) continue;
    const best = didYouMean(ref.name, known);
    const hint = best !== undefined
      ? ` (did you mean ${best}?)`
      : known.length === 0
      ? `; no ${ref.to}s are defined`
      : `; defined ${ref.to}s: ${known.join(", ")}`;
    throw new ConfigError(source, ref.path, `unknown ${ref.to} ${JSON.stringify(ref.name)}${hint}`);
  }
  checkRefCycles(config, source);
  checkCasAcConflict(config, source);
}

function checkRefCycles(config: CairnConfig, source: string): void {
  const edges = new Map(config.stores.map((store) => [store.name, storeRefsIn(store)]));
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, trail: string[]): void => {
    const now = state.get(name);
    if (now === "done") return;
    if (now === "visiting") {
      const cycle = [...trail.slice(trail.indexOf(name)), name].join(" → ");
      const index = config.stores.findIndex((store) => store.name === name);
      throw new ConfigError(source, `stores[${index}]`, `ref_store cycle: ${cycle}`);
    }
    state.set(name, "visiting");
    for (const next of edges.get(name) ?? []) visit(next, [...trail, name]);
    state.set(name, "done");
  };
  for (const store of config.stores) visit(store.name, []);
}

function checkCasAcConflict(config: CairnConfig, source: string): void {
  config.servers.forEach((server, i) => {
    const cas = new Map((server.services.cas ?? []).map((entry) => [entry.instance_name, entry.cas_store]));
    (server.services.ac ?? []).forEach((entry, j) => {
      if (cas.get(entry.instance_name) === entry.ac_store) {
        throw new ConfigError(
          source,
          `servers[${i}].services.ac[${j}].ac_store`,
          `CAS and AC of instance ${JSON.stringify(entry.instance_name)} use the same store ${
            JSON.stringify(entry.ac_store)
          }; give the AC its own store`,
        );
      }
    });
  });
}
