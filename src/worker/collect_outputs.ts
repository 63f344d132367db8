/**
 * Output handling of one action: checking declared output paths before the run (nothing may escape the
 * input root), creating their parent directories, and afterwards turning what the action left into
 * ActionResult fields plus the set of blobs to upload (files, `Tree` messages and their file blobs),
 * deduplicated by digest and uploaded once each after one `hasMany` (FindMissingBlobs) check.
 *
 * Output paths come from `Command.output_paths` (REAPI v2.1; symlinks reported in `output_symlinks`) or,
 * for older clients, `output_files` / `output_directories` (symlinks in `output_file_symlinks` /
 * `output_directory_symlinks`). Every path is relative to the working directory.
 *
 * The action is hostile and the worker reads as root: nothing is ever read through a symlink (see
 * `safe_fs.ts`). Symlinks are reported as symlinks; an output below a symlinked directory (`d -> /etc`
 * with output `d/shadow`) is missing; FIFOs, sockets and devices are never opened; and the total apparent
 * size of the outputs is checked against `limits.max_output_bytes` before a byte is read.
 *
 * @example
 * ```ts ignore
 * import { collectOutputs, planOutputs, uploadBlobs } from "./collect_outputs.ts";
 * const plan = planOutputs(command);          // throws INVALID_ARGUMENT for `../x` or `/x`
 * await createOutputParents(root, plan);
 * // … run the action …
 * const outputs = await collectOutputs(root, plan, { maxOutputBytes: 16 * 2 ** 30 });
 * await uploadBlobs(cas.store, outputs.blobs);
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Digest, digestOf, formatDigest } from "../digest/digest.ts";
import {
  type Command,
  DigestSchema,
  type Directory,
  DirectoryNodeSchema,
  DirectorySchema,
  FileNodeSchema,
  type OutputDirectory,
  OutputDirectorySchema,
  type OutputFile,
  OutputFileSchema,
  type OutputSymlink,
  OutputSymlinkSchema,
  SymlinkNodeSchema,
  TreeSchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { putBytes } from "../store/helpers.ts";
import type { StoreDriver } from "../store/types.ts";
import { mapLimit } from "../util/async.ts";
import { CairnError, Code } from "../util/error.ts";
import {
  type FileIdentity,
  handleStream,
  identityOf,
  kindOf,
  lstatBeneath,
  openVerified,
} from "./safe_fs.ts";

/** Declared outputs, validated. */
export interface OutputPlan {
  /** Working directory relative to the input root ("" = the root). */
  readonly workingDirectory: string;
  /** `output_paths` was used (v2.1 semantics). */
  readonly modern: boolean;
  /** Declared paths: as written (normalized), relative to the working directory, and which list. */
  readonly outputs: readonly { readonly path: string; readonly kind: "file" | "directory" | "any" }[];
}

/**
 * A blob to upload: bytes in memory (small: Tree messages), an action's output file (re-opened only if it
 * is still the regular file with identity `id`), or a file the worker wrote itself (its logs).
 */
export type PendingBlob =
  | { readonly digest: Digest; readonly bytes: Uint8Array }
  | { readonly digest: Digest; readonly path: string; readonly id: FileIdentity }
  | { readonly digest: Digest; readonly path: string };

/** Output fields of the ActionResult and the blobs they need. */
export interface CollectedOutputs {
  readonly outputFiles: OutputFile[];
  readonly outputDirectories: OutputDirectory[];
  readonly outputSymlinks: OutputSymlink[];
  readonly outputFileSymlinks: OutputSymlink[];
  readonly outputDirectorySymlinks: OutputSymlink[];
  readonly blobs: PendingBlob[];
}

/** Normalizes a relative path; throws INVALID_ARGUMENT when it is absolute or climbs out with `..`. */
export function normalizeRelative(path: string, what: string): string {
  if (path.startsWith("/")) {
    throw new CairnError(
      Code.InvalidArgument,
      `Invalid ${what} "${path}": must be relative to the input root`,
    );
  }
  const parts: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (parts.length === 0) {
        throw new CairnError(Code.InvalidArgument, `Invalid ${what} "${path}": it escapes the input root`);
      }
      parts.pop();
    } else {
      if (seg.includes("\0")) {
        throw new CairnError(Code.InvalidArgument, `Invalid ${what} "${path}": NUL byte`);
      }
      parts.push(seg);
    }
  }
  return parts.join("/");
}

/** Validates the command's working directory and output paths (before anything runs). */
export function planOutputs(command: Command): OutputPlan {
  const workingDirectory = normalizeRelative(command.workingDirectory, "working_directory");
  const modern = command.outputPaths.length > 0;
  const declared: { path: string; kind: "file" | "directory" | "any" }[] = modern
    ? command.outputPaths.map((p) => ({ path: p, kind: "any" as const }))
    : [
      ...command.outputFiles.map((p) => ({ path: p, kind: "file" as const })),
      ...command.outputDirectories.map((p) => ({ path: p, kind: "directory" as const })),
    ];
  for (const { path } of declared) {
    if (path.startsWith("/")) {
      throw new CairnError(
        Code.InvalidArgument,
        `Invalid output path "${path}": must be relative to the working directory`,
      );
    }
    // Climbing out of the working directory is fine (`../out` from `sub`); out of the input root is not.
    normalizeRelative(joinRel(workingDirectory, path), "output path");
  }
  return { workingDirectory, modern, outputs: declared };
}

/** Creates the parent directories of every output path (owned by `owner` when given). */
export async function createOutputParents(
  root: string,
  plan: OutputPlan,
  owner?: { readonly uid: number; readonly gid: number },
): Promise<void> {
  const want = new Set<string>();
  if (plan.workingDirectory) want.add(plan.workingDirectory);
  for (const o of plan.outputs) {
    const full = normalizeRelative(joinRel(plan.workingDirectory, o.path), "output path");
    const parent = full.includes("/") ? full.slice(0, full.lastIndexOf("/")) : "";
    if (parent) want.add(parent);
  }
  for (const rel of [...want].sort()) {
    let path = root;
    for (const seg of rel.split("/")) {
      path = `${path}/${seg}`;
      try {
        await Deno.mkdir(path);
        if (owner) await Deno.chown(path, owner.uid, owner.gid);
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
        const info = await Deno.lstat(path);
        if (!info.isDirectory) {
          throw new CairnError(
            Code.InvalidArgument,
            `Cannot create output directory ${rel}: ${path} is an input file`,
          );
        }
      }
    }
  }
}

/** Options of {@linkcode collectOutputs}. */
export interface CollectOptions {
  /** Largest total apparent size of all output files (0 or absent: no limit), `limits.max_output_bytes`. */
  readonly maxOutputBytes?: number;
  /** Told about outputs that were not collected (a symlinked parent, a FIFO in a tree). */
  readonly warn?: (message: string) => void;
}

/** A regular file found by the scan: where it is and the identity it must still have when read. */
interface ScannedFile {
  readonly name: string;
  readonly path: string;
  readonly id: FileIdentity;
  readonly executable: boolean;
}

/** A directory found by the scan, children sorted by name. */
interface ScannedDir {
  readonly files: ScannedFile[];
  readonly dirs: { readonly name: string; readonly dir: ScannedDir }[];
  readonly symlinks: { readonly name: string; readonly target: string }[];
}

/**
 * Reads what the action produced at each declared output path, never following a symlink (see
 * `safe_fs.ts`): symlinks are reported as symlinks, an output below a symlinked directory counts as
 * missing, files are read only when they are the regular file the walk found. First every output is
 * scanned with `lstat` and the apparent sizes of its files are summed (a sparse file counts at its full
 * size); over `maxOutputBytes` nothing is read and RESOURCE_EXHAUSTED names the limit. Missing outputs are
 * simply absent.
 */
export async function collectOutputs(
  root: string,
  plan: OutputPlan,
  options: CollectOptions = {},
): Promise<CollectedOutputs> {
  const out: CollectedOutputs = {
    outputFiles: [],
    outputDirectories: [],
    outputSymlinks: [],
    outputFileSymlinks: [],
    outputDirectorySymlinks: [],
    blobs: [],
  };
  const budget = new Budget(options.maxOutputBytes ?? 0);
  const warn = options.warn ?? (() => {});
  type Scanned =
    | { readonly o: OutputPlan["outputs"][number]; readonly kind: "file"; readonly file: ScannedFile }
    | { readonly o: OutputPlan["outputs"][number]; readonly kind: "directory"; readonly dir: ScannedDir };
  const scanned: Scanned[] = [];
  // Phase 1: lstat only; nothing is opened until the sizes are known to be within the limit.
  for (const o of plan.outputs) {
    const rel = normalizeRelative(joinRel(plan.workingDirectory, o.path), "output path");
    const found = await lstatBeneath(root, rel);
    switch (found.kind) {
      case "missing":
        if (found.reason) warn(`Output ${o.path} not collected: ${found.reason}`);
        break;
      case "symlink": {
        const link = create(OutputSymlinkSchema, { path: o.path, target: found.target });
        if (plan.modern) out.outputSymlinks.push(link);
        else if (o.kind === "directory") out.outputDirectorySymlinks.push(link);
        else out.outputFileSymlinks.push(link);
        break;
      }
      case "file": {
        if (o.kind === "directory") {
          throw new CairnError(Code.InvalidArgument, `Output directory "${o.path}" is a regular file`);
        }
        budget.add(found.info.size, o.path);
        scanned.push({ o, kind: "file", file: scannedFile(o.path, found.path, found.info) });
        break;
      }
      case "directory": {
        if (o.kind === "file") {
          throw new CairnError(Code.InvalidArgument, `Output file "${o.path}" is a directory`);
        }
        scanned.push({ o, kind: "directory", dir: await scanDirectory(found.path, o.path, budget, warn) });
        break;
      }
      case "special":
        throw new CairnError(
          Code.FailedPrecondition,
          `Output ${o.path} is not a regular file, directory or symlink (a FIFO, socket or device)`,
        );
    }
  }
  // Phase 2: hash, each file through a verified no-follow descriptor.
  for (const s of scanned) {
    if (s.kind === "file") {
      const digest = await digestVerified(s.file);
      out.blobs.push({ digest, path: s.file.path, id: s.file.id });
      out.outputFiles.push(create(OutputFileSchema, {
        path: s.o.path,
        digest: toProtoDigest(digest),
        isExecutable: s.file.executable,
      }));
    } else {
      const children = new Map<string, Directory>();
      const rootDir = await buildDirectory(s.dir, out.blobs, children);
      const tree = create(TreeSchema, { root: rootDir, children: [...children.values()] });
      const bytes = toBinary(TreeSchema, tree);
      const treeDigest = digestOf(bytes);
      out.blobs.push({ digest: treeDigest, bytes });
      out.outputDirectories.push(create(OutputDirectorySchema, {
        path: s.o.path,
        treeDigest: toProtoDigest(treeDigest),
        isTopologicallySorted: false,
      }));
    }
  }
  return out;
}

/** The running total of output bytes against `limits.max_output_bytes`. */
class Budget {
  readonly #max: number;
  #used = 0;

  constructor(max: number) {
    this.#max = max;
  }

  add(size: number, path: string): void {
    this.#used += size;
    if (this.#max <= 0 || this.#used <= this.#max) return;
    throw new CairnError(
      Code.ResourceExhausted,
      size > this.#max
        ? `Output ${path} is ${size} bytes, above limits.max_output_bytes ${this.#max}`
        : `Outputs total at least ${this.#used} bytes (at ${path}), above limits.max_output_bytes ${this.#max}`,
    );
  }
}

function scannedFile(name: string, path: string, info: Deno.FileInfo): ScannedFile {
  return { name, path, id: identityOf(info), executable: ((info.mode ?? 0) & 0o111) !== 0 };
}

/** Walks a directory output with lstat only; symlinks are recorded as symlinks, never followed. */
async function scanDirectory(
  path: string,
  rel: string,
  budget: Budget,
  warn: (message: string) => void,
): Promise<ScannedDir> {
  const names: string[] = [];
  for await (const e of Deno.readDir(path)) names.push(e.name);
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const dir: ScannedDir = { files: [], dirs: [], symlinks: [] };
  for (const name of names) {
    const full = `${path}/${name}`;
    const info = await Deno.lstat(full);
    const kind = kindOf(info);
    if (kind === "symlink") {
      dir.symlinks.push({ name, target: await Deno.readLink(full) });
    } else if (kind === "directory") {
      dir.dirs.push({ name, dir: await scanDirectory(full, `${rel}/${name}`, budget, warn) });
    } else if (kind === "file") {
      budget.add(info.size, `${rel}/${name}`);
      dir.files.push(scannedFile(name, full, info));
    } else {
      warn(`Output ${rel}/${name} skipped: not a regular file, directory or symlink`);
    }
  }
  return dir;
}

/**
 * Uploads blobs to `store`, each digest once: duplicates are dropped, `hasMany` filters out what the
 * store already holds, and the rest stream from disk (or memory) a few at a time.
 */
export async function uploadBlobs(
  store: StoreDriver,
  blobs: readonly PendingBlob[],
  concurrency = 4,
): Promise<number> {
  const unique = new Map<string, PendingBlob>();
  for (const b of blobs) if (b.digest.size > 0) unique.set(formatDigest(b.digest), b);
  const list = [...unique.values()];
  if (list.length === 0) return 0;
  const sizes = await store.hasMany(list.map((b) => b.digest));
  const missing = list.filter((_, i) => sizes[i] === undefined);
  await mapLimit(missing, concurrency, async (b) => {
    if ("bytes" in b) {
      await putBytes(store, b.digest, b.bytes);
    } else if ("id" in b) {
      const handle = await openVerified(b.path, b.id);
      await store.write(b.digest, handleStream(handle, b.id.size), { exact: b.digest.size });
    } else {
      const file = await Deno.open(b.path, { read: true });
      await store.write(b.digest, file.readable, { exact: b.digest.size });
    }
  });
  return missing.length;
}

/** SHA-256 digest of a scanned output file, read through a verified no-follow descriptor. */
async function digestVerified(file: ScannedFile): Promise<Digest> {
  const handle = await openVerified(file.path, file.id);
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of handleStream(handle, file.id.size)) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { hash: hash.digest("hex"), size };
}

/** SHA-256 digest of a file the worker wrote itself (stdout/stderr logs), streamed. */
export async function digestFile(path: string): Promise<Digest> {
  const hash = createHash("sha256");
  let size = 0;
  const file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { hash: hash.digest("hex"), size };
}

async function buildDirectory(
  scanned: ScannedDir,
  blobs: PendingBlob[],
  children: Map<string, Directory>,
): Promise<Directory> {
  const dir = create(DirectorySchema, {});
  for (const f of scanned.files) {
    const d = await digestVerified(f);
    blobs.push({ digest: d, path: f.path, id: f.id });
    dir.files.push(
      create(FileNodeSchema, { name: f.name, digest: toProtoDigest(d), isExecutable: f.executable }),
    );
  }
  for (const { name, dir: sub } of scanned.dirs) {
    const child = await buildDirectory(sub, blobs, children);
    const bytes = toBinary(DirectorySchema, child);
    const d = digestOf(bytes);
    children.set(formatDigest(d), child);
    dir.directories.push(create(DirectoryNodeSchema, { name, digest: toProtoDigest(d) }));
  }
  for (const { name, target } of scanned.symlinks) {
    dir.symlinks.push(create(SymlinkNodeSchema, { name, target }));
  }
  return dir;
}

function toProtoDigest(d: Digest) {
  return create(DigestSchema, { hash: d.hash, sizeBytes: BigInt(d.size) });
}

function joinRel(a: string, b: string): string {
  return a ? `${a}/${b}` : b;
}
