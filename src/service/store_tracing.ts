/**
 * Store spans at the service → store boundary, when tracing is on: the services get their stores through
 * {@linkcode tracedStore}, which records `store.read` (until the stream ends or is cancelled),
 * `store.read_bytes`, `store.write` and `store.has` (with `cairn.store`, `cairn.store_kind` and
 * `cairn.digest`) as children of the active RPC span. Every other member passes straight through; with
 * tracing off the store itself is returned.
 *
 * @example
 * ```ts ignore
 * import { tracedStore } from "./store_tracing.ts";
 * const cas = tracedStore("CAS", stores.get("CAS"));
 * ```
 * @module
 */
import type { ReadOptions, StoreDriver, StoreKey } from "../store/types.ts";
import { type Attributes, endSpan, startSpan, TRACING } from "../util/tracing.ts";

const wrapped = new WeakMap<StoreDriver, StoreDriver>();

/** `store` with spans around its reads and writes when tracing is on; `store` itself otherwise. */
export function tracedStore(name: string, store: StoreDriver): StoreDriver {
  if (!TRACING) return store;
  let out = wrapped.get(store);
  if (out === undefined) {
    out = wrap(name, store);
    wrapped.set(store, out);
  }
  return out;
}

function keyText(key: StoreKey): string {
  if (typeof key === "string") return key;
  const d = "ac" in key ? key.ac : key;
  return `${d.hash}/${d.size}`;
}

function wrap(name: string, store: StoreDriver): StoreDriver {
  const base = { "cairn.store": name, "cairn.store_kind": store.kind };
  const attrs = (key: StoreKey): Attributes => ({ ...base, "cairn.digest": keyText(key) });
  const traced: Partial<StoreDriver> = {
    async hasMany(keys) {
      const span = startSpan("store.has", { attributes: { ...base, "cairn.key_count": keys.length } });
      try {
        const out = await store.hasMany(keys);
        endSpan(span);
        return out;
      } catch (err) {
        endSpan(span, err);
        throw err;
      }
    },
    async read(key: StoreKey, options?: ReadOptions) {
      const span = startSpan("store.read", { attributes: attrs(key) });
      let stream: ReadableStream<Uint8Array>;
      try {
        stream = await store.read(key, options);
      } catch (err) {
        endSpan(span, err);
        throw err;
      }
      const reader = stream.getReader();
      let bytes = 0;
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const r = await reader.read();
            if (r.done) {
              span.setAttribute("cairn.bytes", bytes);
              endSpan(span);
              controller.close();
            } else {
              bytes += r.value.byteLength;
              controller.enqueue(r.value);
            }
          } catch (err) {
            endSpan(span, err);
            controller.error(err);
          }
        },
        cancel(reason) {
          span.setAttribute("cairn.bytes", bytes);
          span.addEvent("cancelled");
          endSpan(span);
          return reader.cancel(reason);
        },
      }, { highWaterMark: 0 });
    },
    async write(key, data, size, options) {
      const span = startSpan("store.write", {
        attributes: { ...attrs(key), "cairn.bytes": "exact" in size ? size.exact : size.max },
      });
      try {
        await store.write(key, data, size, options);
        endSpan(span);
      } catch (err) {
        endSpan(span, err);
        throw err;
      }
    },
  };
  if (store.readBytes) {
    const readBytes = store.readBytes.bind(store);
    traced.readBytes = async (key, options) => {
      const span = startSpan("store.read_bytes", { attributes: attrs(key) });
      try {
        const out = await readBytes(key, options);
        span.setAttribute("cairn.bytes", out.byteLength);
        endSpan(span);
        return out;
      } catch (err) {
        endSpan(span, err);
        throw err;
      }
    };
  }
  return new Proxy(store, {
    get(target, prop) {
      if (Object.hasOwn(traced, prop)) return traced[prop as keyof StoreDriver];
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
