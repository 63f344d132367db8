/**
 * Reading what a hostile action left in its directory without ever following a symlink out of it.
 *
 * The worker reads outputs as its own (often root) user, outside the sandbox, so every path below the
 * action's directory is walked one component at a time with `lstat` (never `stat`): a component that is a
 * symlink ends the walk (the output counts as missing; symlinks are only ever reported as symlinks, with
 * their target as text). Files are opened with `O_NOFOLLOW | O_NONBLOCK` (a symlink swapped in fails with
 * ELOOP; a FIFO cannot block the worker) and checked with `fstat` on the open descriptor: it must be a
 * regular file with the device and inode the walk saw, so bytes are read only from the very inode that was
 * found, as a regular file, inside the action's directory.
 *
 * Complete freedom from races also rests on the sandbox: bwrap gives each action its own PID namespace, so
 * every process of the action is dead before its outputs are read and nothing can swap a directory for a
 * symlink between the checks and the reads. Without bwrap (`sandbox: "none"`) the action runs as the
 * worker's own user anyway, and these checks are defence in depth.
 *
 * Hard links cannot smuggle host files in either: in the sandbox the action's directory is its own bind
 * mount and every host path is another mount, so `link(2)` fails with EXDEV (the kernel refuses links across
 * mounts even of one filesystem), and the action's unprivileged user meets `fs.protected_hardlinks` too.
 *
 * @example
 * ```ts ignore
 * import { lstatBeneath, openVerified } from "./safe_fs.ts";
 * const found = await lstatBeneath("/work/actions/1/root", "out/a.txt");
 * if (found.kind === "file") {
 *   const handle = await openVerified(found.path, found.info);
 *   await handle.close();
 * }
 * ```
 * @module
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import { CairnError, Code } from "../util/error.ts";

/** The identity of a file as `lstat` saw it. */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
}

/** What {@linkcode lstatBeneath} found at a path (never through a symlink). */
export type Found =
  | { readonly kind: "missing"; readonly reason?: string }
  | { readonly kind: "symlink"; readonly path: string; readonly target: string }
  | { readonly kind: "file"; readonly path: string; readonly info: Deno.FileInfo }
  | { readonly kind: "directory"; readonly path: string; readonly info: Deno.FileInfo }
  | { readonly kind: "special"; readonly path: string; readonly info: Deno.FileInfo };

const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/** The kind of an `lstat` result. */
export function kindOf(info: Deno.FileInfo): "symlink" | "file" | "directory" | "special" {
  if (info.isSymlink) return "symlink";
  if (info.isFile) return "file";
  if (info.isDirectory) return "directory";
  return "special";
}

/**
 * Resolves `rel` (normalized, no `..`) below `base` one component at a time with `lstat`. `base` itself
 * must be a real directory (not a symlink). A missing component, or any parent component that is a
 * symlink or not a directory, gives `missing` (with the reason); the last component is reported as it is.
 */
export async function lstatBeneath(base: string, rel: string): Promise<Found> {
  const top = await lstatOrUndefined(base);
  if (!top) return { kind: "missing", reason: `${base} does not exist` };
  if (!top.isDirectory) return { kind: "missing", reason: `${base} is not a directory (${kindOf(top)})` };
  const parts = rel.split("/").filter((p) => p !== "" && p !== ".");
  let path = base;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === "..") throw new CairnError(Code.InvalidArgument, `Path "${rel}" climbs out with ".."`);
    path = `${path}/${part}`;
    const info = await lstatOrUndefined(path);
    if (!info) return { kind: "missing" };
    const kind = kindOf(info);
    if (i < parts.length - 1) {
      if (kind === "directory") continue;
      return {
        kind: "missing",
        reason: `${parts.slice(0, i + 1).join("/")} is a ${kind}${
          kind === "symlink" ? " (not followed)" : ""
        }`,
      };
    }
    if (kind === "symlink") return { kind, path, target: await Deno.readLink(path) };
    return { kind, path, info };
  }
  return { kind: "directory", path, info: top };
}

/**
 * Opens a file found by a no-follow walk: `O_NOFOLLOW | O_NONBLOCK`, then `fstat` on the descriptor must
 * show a regular file with the `dev`/`ino` (and size) the walk saw. Anything else is FAILED_PRECONDITION:
 * the file was replaced while being collected.
 */
export async function openVerified(path: string, expected: FileIdentity): Promise<fsp.FileHandle> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(path, OPEN_FLAGS);
  } catch (err) {
    throw new CairnError(
      Code.FailedPrecondition,
      `Cannot read output ${path}: ${(err as Error).message} (it changed while being collected)`,
      { cause: err },
    );
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Error("not a regular file");
    if (Number(st.dev) !== expected.dev || Number(st.ino) !== expected.ino) throw new Error("another file");
    if (Number(st.size) !== expected.size) throw new Error(`size ${st.size}, expected ${expected.size}`);
    return handle;
  } catch (err) {
    await handle.close().catch(() => {});
    throw new CairnError(
      Code.FailedPrecondition,
      `Cannot read output ${path}: ${(err as Error).message} (it changed while being collected)`,
    );
  }
}

/** The identity of an `lstat` result. */
export function identityOf(info: Deno.FileInfo): FileIdentity {
  return { dev: info.dev ?? 0, ino: info.ino ?? 0, size: info.size };
}

/** A stream of exactly `size` bytes from an open handle, closing it at the end (or on cancel). */
export function handleStream(
  handle: fsp.FileHandle,
  size: number,
  chunk = 1 << 20,
): ReadableStream<Uint8Array> {
  let pos = 0;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await handle.close().catch(() => {});
  };
  return new ReadableStream<Uint8Array>({
    type: "bytes",
    async pull(controller) {
      if (pos >= size) {
        await close();
        controller.close();
        return;
      }
      const buf = new Uint8Array(Math.min(chunk, size - pos));
      const { bytesRead } = await handle.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) {
        await close();
        controller.error(
          new CairnError(
            Code.FailedPrecondition,
            `Output file shrank while being read (${pos} of ${size} bytes)`,
          ),
        );
        return;
      }
      pos += bytesRead;
      controller.enqueue(buf.subarray(0, bytesRead));
    },
    cancel: close,
  });
}

/**
 * Reads a small regular file that an action could have tampered with (e.g. its side-channel file):
 * never through a symlink, never blocking on a FIFO, at most `max` bytes. Undefined when it is missing or
 * not a regular file.
 */
export async function readSmallFileNoFollow(path: string, max: number): Promise<string | undefined> {
  const info = await lstatOrUndefined(path);
  if (!info?.isFile || info.size > max) return undefined;
  let handle: fsp.FileHandle;
  try {
    handle = await openVerified(path, identityOf(info));
  } catch {
    return undefined;
  }
  const chunks: Uint8Array[] = [];
  for await (const c of handleStream(handle, info.size)) chunks.push(c);
  return new TextDecoder().decode(concat(chunks));
}

async function lstatOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return undefined;
    throw err;
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
