/**
 * The worker side of {@linkcode IoThread}: writes files (synchronously, on this thread) and hashes byte
 * streams for the main thread. Buffers arrive transferred and go back transferred once used, so the main
 * thread reuses them. Internal: only `io_thread.ts` starts it.
 *
 * Requests answered with `done {seq, hash?}` or `error {seq, code, message}`:
 * `open {id, path, mode}`, `close {id, mtimeMs}`, `abort {id}`, `hash {id}`, `digest {id}`.
 * Data, answered with `returned {id, buf}`: `write {id, buf, len}`, `update {id, buf, len}`.
 * After a failed write the file is dead: later writes are returned unwritten and `close` reports the error.
 * @module
 */
/// <reference lib="deno.worker" />
import { createHash, type Hash } from "node:crypto";

interface DataMessage {
  readonly t: "write" | "update";
  readonly id: number;
  readonly buf: ArrayBuffer;
  readonly len: number;
}
type Request =
  | {
    readonly t: "open";
    readonly id: number;
    readonly seq: number;
    readonly path: string;
    readonly mode: number;
  }
  | { readonly t: "close" | "abort"; readonly id: number; readonly seq: number; readonly mtimeMs?: number }
  | { readonly t: "hash" | "digest"; readonly id: number; readonly seq: number };

interface OpenFile {
  readonly file: Deno.FsFile;
  error: { code: string; message: string } | undefined;
}

/**
 * Bulk work gives way to the server's event loop: on Linux (glibc, `--allow-ffi`) this thread lowers its own
 * scheduling priority to nice {@linkcode BULK_NICE}, so hashing and writing a large upload (or a client's
 * zstd bomb) never delays the small calls answered on the main thread; idle cores still run it at full speed.
 * Where FFI is not allowed or not glibc, the thread keeps the process's priority.
 */
const BULK_NICE = 10;
function lowerOwnPriority(): void {
  if (Deno.build.os !== "linux") return;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return;
    const libc = Deno.dlopen(
      "libc.so.6",
      {
        gettid: { parameters: [], result: "i32" },
        setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
      } as const,
    );
    // PRIO_PROCESS with a thread id sets that one thread's nice value (Linux threads are tasks).
    libc.symbols.setpriority(0, libc.symbols.gettid(), BULK_NICE);
    libc.close();
  } catch { /* no FFI or not glibc: full priority */ }
}
lowerOwnPriority();

const files = new Map<number, OpenFile>();
const hashes = new Map<number, Hash>();

function describe(err: unknown): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown };
  return {
    code: typeof e?.code === "string" ? e.code : "EIO",
    message: typeof e?.message === "string" ? e.message : String(err),
  };
}

function writeFile(id: number, bytes: Uint8Array): void {
  const f = files.get(id);
  if (f === undefined || f.error !== undefined) return;
  try {
    let pos = 0;
    while (pos < bytes.byteLength) pos += f.file.writeSync(bytes.subarray(pos));
  } catch (err) {
    f.error = describe(err);
  }
}

/** Handles a request; returns the hash for `digest`. */
function request(m: Request): string | undefined {
  switch (m.t) {
    case "open":
      files.set(m.id, {
        file: Deno.openSync(m.path, { write: true, createNew: true, mode: m.mode }),
        error: undefined,
      });
      return;
    case "hash":
      hashes.set(m.id, createHash("sha256"));
      return;
    case "digest": {
      const h = hashes.get(m.id);
      hashes.delete(m.id);
      if (h === undefined) throw new Error(`hash ${m.id} is not open`);
      return h.digest("hex");
    }
    case "close":
    case "abort": {
      const f = files.get(m.id);
      files.delete(m.id);
      hashes.delete(m.id);
      if (f === undefined) {
        if (m.t === "abort") return;
        throw new Error(`file ${m.id} is not open`);
      }
      try {
        if (m.t === "abort") return;
        if (f.error !== undefined) throw f.error;
        if (m.mtimeMs !== undefined) {
          const when = new Date(m.mtimeMs);
          f.file.utimeSync(when, when);
        }
      } finally {
        f.file.close();
      }
    }
  }
}

function isData(m: DataMessage | Request): m is DataMessage {
  return m.t === "write" || m.t === "update";
}

self.onmessage = (event: MessageEvent<DataMessage | Request>) => {
  const m = event.data;
  if (isData(m)) {
    const bytes = new Uint8Array(m.buf, 0, m.len);
    if (m.t === "write") writeFile(m.id, bytes);
    else hashes.get(m.id)?.update(bytes);
    self.postMessage({ t: "returned", id: m.id, buf: m.buf }, [m.buf]);
    return;
  }
  try {
    const hash = request(m);
    self.postMessage({ t: "done", seq: m.seq, hash });
  } catch (err) {
    self.postMessage({ t: "error", seq: m.seq, ...describe(err) });
  }
};
