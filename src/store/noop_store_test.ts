import { runStoreConformance } from "./conformance_suite.ts";
import { createNoopStore } from "./noop_store.ts";

runStoreConformance(
  "noop",
  () => Promise.resolve({ store: createNoopStore(), cleanup: () => Promise.resolve() }),
  { retains: false },
);
