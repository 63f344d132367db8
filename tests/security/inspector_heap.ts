/**
 * The soak's view into the server's V8 heap through its inspector (`deno run --inspect=…`): a full garbage
 * collection followed by `Deno.memoryUsage()` (what is really retained, not what the collector has not yet
 * freed), and a heap snapshot summarised by constructor (which objects are retained).
 *
 * @example
 * ```ts ignore
 * import { InspectorHeap } from "./inspector_heap.ts";
 * const heap = await InspectorHeap.connect(9229);
 * console.log(await heap.retained());            // { rss, heapUsed, heapTotal, external } after a full GC
 * const top = await heap.snapshotSummary();        // Map "type:name" → { count, bytes }
 * heap.close();
 * ```
 * @module
 */

/** Memory of the inspected process after a full collection, in bytes. */
export interface Retained {
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
}

/** Objects of one kind in a heap snapshot. */
export interface SnapshotGroup {
  count: number;
  bytes: number;
}

/** One Chrome DevTools Protocol session on the inspected process's first target. */
export class InspectorHeap {
  readonly #ws: WebSocket;
  #next = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #chunks: string[] = [];

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data));
      if (msg.method === "HeapProfiler.addHeapSnapshotChunk") {
        this.#chunks.push(msg.params.chunk);
        return;
      }
      const p = msg.id === undefined ? undefined : this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`inspector: ${msg.error.message}`));
      else p.resolve(msg.result);
    };
  }

  /** Connects to the inspector listening on `port` (loopback). */
  static async connect(port: number): Promise<InspectorHeap> {
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const url = targets[0]?.webSocketDebuggerUrl;
    if (typeof url !== "string") throw new Error(`inspector on ${port}: no target`);
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`inspector on ${port}: cannot connect`));
    });
    const heap = new InspectorHeap(ws);
    await heap.#call("Runtime.enable");
    // A process started with --inspect (not --inspect-wait) runs on; this only lets `Runtime.evaluate` work.
    await heap.#call("Runtime.runIfWaitingForDebugger").catch(() => {});
    return heap;
  }

  #call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Memory after a full garbage collection. */
  async retained(): Promise<Retained> {
    await this.#call("HeapProfiler.collectGarbage");
    const r = await this.#call("Runtime.evaluate", {
      expression: "JSON.stringify(Deno.memoryUsage())",
      returnByValue: true,
    }) as { result: { value: string } };
    return JSON.parse(r.result.value);
  }

  /**
   * Asks glibc to hand its free memory back (`malloc_trim(0)` through FFI in the inspected process, which
   * needs `--allow-ffi`) and returns the memory after; undefined where there is no glibc.
   */
  async trimmed(): Promise<Retained | undefined> {
    const r = await this.#call("Runtime.evaluate", {
      expression: `(() => { try {
        const lib = Deno.dlopen("libc.so.6", { malloc_trim: { parameters: ["usize"], result: "i32" } });
        lib.symbols.malloc_trim(0n); lib.close();
        return JSON.stringify(Deno.memoryUsage());
      } catch { return ""; } })()`,
      returnByValue: true,
    }) as { result: { value: string } };
    return r.result.value ? JSON.parse(r.result.value) : undefined;
  }

  /** A heap snapshot's objects grouped by `type:name`, with their count and self size. */
  async snapshotSummary(): Promise<Map<string, SnapshotGroup>> {
    this.#chunks = [];
    await this.#call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    const snap = JSON.parse(this.#chunks.join(""));
    this.#chunks = [];
    const fields: string[] = snap.snapshot.meta.node_fields;
    const types: string[] = snap.snapshot.meta.node_types[0];
    const stride = fields.length;
    const iType = fields.indexOf("type");
    const iName = fields.indexOf("name");
    const iSize = fields.indexOf("self_size");
    const nodes: number[] = snap.nodes;
    const strings: string[] = snap.strings;
    const out = new Map<string, SnapshotGroup>();
    for (let i = 0; i < nodes.length; i += stride) {
      const type = types[nodes[i + iType]!] ?? "?";
      let name = strings[nodes[i + iName]!] ?? "?";
      if (type === "string" || type === "concatenated string" || type === "sliced string") name = "";
      if (name.length > 60) name = name.slice(0, 60);
      const key = `${type}:${name}`;
      const g = out.get(key) ?? { count: 0, bytes: 0 };
      g.count++;
      g.bytes += nodes[i + iSize]!;
      out.set(key, g);
    }
    return out;
  }

  close(): void {
    this.#ws.close();
  }
}

/** The groups that grew most in bytes from `before` to `after`, as printable lines. */
export function growthLines(
  before: Map<string, SnapshotGroup>,
  after: Map<string, SnapshotGroup>,
  top = 25,
): string[] {
  const rows = [...after].map(([k, a]) => {
    const b = before.get(k) ?? { count: 0, bytes: 0 };
    return { k, dBytes: a.bytes - b.bytes, dCount: a.count - b.count, a };
  });
  rows.sort((x, y) => y.dBytes - x.dBytes);
  return rows.slice(0, top).map((r) =>
    `${(r.dBytes / 1048576).toFixed(2).padStart(8)} MiB ${String(r.dCount).padStart(9)} objs  ${r.k} ` +
    `(now ${r.a.count} / ${(r.a.bytes / 1048576).toFixed(2)} MiB)`
  );
}
