/**
 * The `google.longrunning.Operations` service over the schedulers' operations.
 *
 * GetOperation returns the latest state; WaitOperation waits until done (or its `timeout`, or the call's
 * deadline) and returns the latest state; CancelOperation cancels (the worker is told to kill the action; the
 * operation completes with CANCELLED); DeleteOperation forgets an operation; ListOperations lists those under
 * a collection name (`main/operations`, or empty for all), sorted by name, with `done=true|false` filters and
 * offset page tokens. An operation's instance is read from its name (`{instance}/operations/{uuid}`).
 *
 * @example
 * ```ts
 * import { createOperationsService } from "./operations_service.ts";
 * import { Operations } from "../gen/google/longrunning/operations_pb.ts";
 * import { SimpleScheduler } from "../scheduler/simple_scheduler.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * import type { ServiceBinding } from "../transport/types.ts";
 * const casStore = createMemoryStore();
 * const scheduler = new SimpleScheduler({});
 * const bindings: ServiceBinding[] = [];
 * const impl = createOperationsService({ instances: new Map([["main", { scheduler }]]) });
 * bindings.push({ service: Operations, impl });
 * await scheduler.close();
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ListOperationsResponseSchema, type Operations } from "../gen/google/longrunning/operations_pb.ts";
import type { ActionScheduler, OperationState } from "../scheduler/types.ts";
import { CairnError, Code, quoteClient } from "../util/error.ts";
import { schedulersFor, toOperation } from "./execution_service.ts";

/** Options of {@linkcode createOperationsService}. */
export interface OperationsServiceOptions {
  /** Instance name → its scheduler (the `execution` entries). */
  readonly instances: ReadonlyMap<string, { readonly scheduler: ActionScheduler }>;
}

const DEFAULT_PAGE_SIZE = 1000;

function notFound(name: string): CairnError {
  return new CairnError(
    Code.NotFound,
    `Operation ${quoteClient(name)} not found (unknown, or completed and expired)`,
  );
}

/** Builds the Operations service. */
export function createOperationsService(options: OperationsServiceOptions): ServiceImpl<typeof Operations> {
  const { instances } = options;

  async function find(name: string): Promise<[ActionScheduler, OperationState]> {
    for (const scheduler of schedulersFor(instances, name)) {
      const state = await scheduler.findOperation(name);
      if (state !== undefined) return [scheduler, state];
    }
    throw notFound(name);
  }

  return {
    async getOperation(req) {
      const [, state] = await find(req.name);
      return toOperation(state);
    },

    async waitOperation(req, ctx: HandlerContext) {
      for (const scheduler of schedulersFor(instances, req.name)) {
        const handle = await scheduler.waitOperation(req.name);
        if (handle === undefined) continue;
        const timeoutMs = req.timeout === undefined
          ? undefined
          : Number(req.timeout.seconds) * 1000 + req.timeout.nanos / 1e6;
        const timer = timeoutMs === undefined ? undefined : setTimeout(() => handle.close(), timeoutMs);
        const onAbort = () => handle.close();
        ctx.signal.addEventListener("abort", onAbort, { once: true });
        let last = handle.current();
        try {
          for await (const state of handle) last = state;
        } finally {
          clearTimeout(timer);
          ctx.signal.removeEventListener("abort", onAbort);
          handle.close();
        }
        return toOperation(last);
      }
      throw notFound(req.name);
    },

    async cancelOperation(req) {
      const [scheduler] = await find(req.name);
      await scheduler.cancelOperation(req.name); // false: already done, nothing to cancel
      return create(EmptySchema);
    },

    async deleteOperation(req) {
      for (const scheduler of schedulersFor(instances, req.name)) {
        if (await scheduler.deleteOperation(req.name)) return create(EmptySchema);
      }
      throw notFound(req.name);
    },

    async listOperations(req) {
      const seen = new Set<ActionScheduler>();
      const all: OperationState[] = [];
      for (const { scheduler } of instances.values()) {
        if (seen.has(scheduler)) continue;
        seen.add(scheduler);
        all.push(...await scheduler.listOperations());
      }
      const prefix = req.name === "" ? "" : `${req.name.replace(/\/+$/, "")}/`;
      const filter = req.filter.trim().replace(/\s+/g, "");
      if (filter !== "" && filter !== "done=true" && filter !== "done=false") {
        throw new CairnError(
          Code.InvalidArgument,
          `Unsupported ListOperations filter ${quoteClient(req.filter)}: use done=true or done=false`,
        );
      }
      const wanted = all
        .filter((s) => s.name.startsWith(prefix))
        .filter((s) => filter === "" || String(s.done) === filter.slice(5))
        .sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      const offset = req.pageToken === "" ? 0 : Number(req.pageToken);
      if (!Number.isSafeInteger(offset) || offset < 0) {
        throw new CairnError(Code.InvalidArgument, `Invalid page_token ${quoteClient(req.pageToken)}`);
      }
      const size = req.pageSize > 0 ? req.pageSize : DEFAULT_PAGE_SIZE;
      const page = wanted.slice(offset, offset + size);
      return create(ListOperationsResponseSchema, {
        operations: page.map(toOperation),
        nextPageToken: offset + size < wanted.length ? String(offset + size) : "",
      });
    },
  };
}
