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
 * @example
 * ```ts ignore
 * import { collectOutputs, planOutputs, uploadBlobs } from "./collect_outputs.ts";
 * const plan = planOutputs(command);          // throws INVALID_ARGUMENT for `../x` or `/x`
 * await createOutputParents(root, plan);
 * // … run the action …
 * const outputs = await collectOutputs(root, plan);
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
import { CairnError, Code } from "../util/error.ts";

/** Declared outputs, validated. */
export interface OutputPlan {
  /** Working directory relative to the input root ("" = the root). */
  readonly workingDirectory: string;
  /** `output_paths` was used (v2.1 semantics). */
  readonly modern: boolean;
  /** Declared paths: as written (normalized), relative to the working directory, and which list. */
  readonly outputs: readonly { readonly path: string; readonly kind: "file" | "directory" | "any" }[];
}

/** A blob to upload: bytes in memory (small: Tree messages) or a file on disk. */
export type PendingBlob = { readonly digest: Digest; readonly bytes: Uint8Array } | {
  readonly digest: Digest;
  readonly path: string;
};

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

/** Reads what the action produced at each declared output path. Missing outputs are simply absent. */
export async function collectOutputs(root: string, plan: OutputPlan): Promise<CollectedOutputs> {
  const out: CollectedOutputs = {
    outputFiles: [],
    outputDirectories: [],
    outputSymlinks: [],
    outputFileSymlinks: [],
    outputDirectorySymlinks: [],
    blobs: [],
  };
  for (const o of plan.outputs) {
    const full = `${root}/${normalizeRelative(joinRel(plan.workingDirectory, o.path), "output path")}`
      .replace(/\/$/, "");
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(full);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    if (info.isSymlink) {
      const link = create(OutputSymlinkSchema, { path: o.path, target: await Deno.readLink(full) });
      if (plan.modern) out.outputSymlinks.push(link);
      else if (o.kind === "directory") out.outputDirectorySymlinks.push(link);
      else out.outputFileSymlinks.push(link);
    } else if (info.isFile) {
      if (o.kind === "directory") {
        throw new CairnError(Code.InvalidArgument, `Output directory "${o.path}" is a regular file`);
      }
      const digest = await digestFile(full);
      out.blobs.push({ digest, path: full });
      out.outputFiles.push(create(OutputFileSchema, {
        path: o.path,
        digest: toProtoDigest(digest),
        isExecutable: ((info.mode ?? 0) & 0o111) !== 0,
      }));
    } else if (info.isDirectory) {
      if (o.kind === "file") {
        throw new CairnError(Code.InvalidArgument, `Output file "${o.path}" is a directory`);
      }
      const children = new Map<string, Directory>();
      const rootDir = await buildDirectory(full, out.blobs, children);
      const tree = create(TreeSchema, { root: rootDir, children: [...children.values()] });
      const bytes = toBinary(TreeSchema, tree);
      const treeDigest = digestOf(bytes);
      out.blobs.push({ digest: treeDigest, bytes });
      out.outputDirectories.push(create(OutputDirectorySchema, {
        path: o.path,
        treeDigest: toProtoDigest(treeDigest),
        isTopologicallySorted: false,
      }));
    }
  }
  return out;
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
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, missing.length) }, async () => {
    while (next < missing.length) {
      const b = missing[next++]!;
      if ("bytes" in b) {
        await putBytes(store, b.digest, b.bytes);
      } else {
        const file = await Deno.open(b.path, { read: true });
        await store.write(b.digest, file.readable, { exact: b.digest.size });
      }
    }
  }));
  return missing.length;
}

/** SHA-256 digest of a file, streamed. */
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
  path: string,
  blobs: PendingBlob[],
  children: Map<string, Directory>,
): Promise<Directory> {
  const entries: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(path)) entries.push(e);
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const dir = create(DirectorySchema, {});
  for (const e of entries) {
    const full = `${path}/${e.name}`;
    const info = await Deno.lstat(full);
    if (info.isSymlink) {
      dir.symlinks.push(create(SymlinkNodeSchema, { name: e.name, target: await Deno.readLink(full) }));
    } else if (info.isDirectory) {
      const child = await buildDirectory(full, blobs, children);
      const bytes = toBinary(DirectorySchema, child);
      const d = digestOf(bytes);
      children.set(formatDigest(d), child);
      dir.directories.push(create(DirectoryNodeSchema, { name: e.name, digest: toProtoDigest(d) }));
    } else if (info.isFile) {
      const d = await digestFile(full);
      blobs.push({ digest: d, path: full });
      dir.files.push(create(FileNodeSchema, {
        name: e.name,
        digest: toProtoDigest(d),
        isExecutable: ((info.mode ?? 0) & 0o111) !== 0,
      }));
    }
  }
  return dir;
}

function toProtoDigest(d: Digest) {
  return create(DigestSchema, { hash: d.hash, sizeBytes: BigInt(d.size) });
}

function joinRel(a: string, b: string): string {
  return a ? `${a}/${b}` : b;
}
