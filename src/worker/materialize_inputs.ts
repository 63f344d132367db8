/**
 * Lays out an action's input root from its Merkle tree: directories created (and handed to the
 * sandbox's action user when the worker is root), files hard-linked from the worker's CAS
 * (see {@linkcode WorkerCas.linkInto}), symlinks created as given.
 *
 * @example
 * ```ts ignore
 * import { materializeInputs } from "./materialize_inputs.ts";
 * const stats = await materializeInputs(cas, action.inputRootDigest, "/work/actions/1/root");
 * console.log(stats.files, stats.bytes);
 * ```
 * @module
 */
import { type Digest, formatDigest, fromProto } from "../digest/digest.ts";
import {
  type Directory,
  DirectorySchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { mapLimit } from "../util/async.ts";
import { CairnError, Code } from "../util/error.ts";
import type { WorkerCas } from "./worker_cas.ts";
import { MAX_TREE_ENTRIES, sliceByBytes, TreeBudget } from "../util/limits.ts";

/** What was laid out. */
export interface InputStats {
  readonly files: number;
  readonly directories: number;
  readonly bytes: number;
}

interface PendingFile {
  readonly path: string;
  readonly digest: Digest;
  readonly executable: boolean;
}

const DIRECTORY_FETCH_CONCURRENCY = 16;
const LINK_CONCURRENCY = 32;

/** Materializes the tree `rootDigest` into the existing, empty directory `root`. */
export async function materializeInputs(
  cas: WorkerCas,
  rootDigest: Digest,
  root: string,
  owner?: { readonly uid: number; readonly gid: number },
): Promise<InputStats> {
  const dirs: string[] = [];
  const files: PendingFile[] = [];
  const symlinks: { path: string; target: string }[] = [];
  const cache = new Map<string, Promise<Directory>>();
  const budget = new TreeBudget(`Input tree ${formatDigest(rootDigest)}`);
  let entries = 0;
  const count = (n: number) => {
    entries += n;
    if (entries > MAX_TREE_ENTRIES) {
      throw new CairnError(
        Code.ResourceExhausted,
        `Input tree ${
          formatDigest(rootDigest)
        } expands to more than ${MAX_TREE_ENTRIES} files, directories and symlinks`,
      );
    }
  };
  const fetchDir = (d: Digest) => {
    const key = formatDigest(d);
    let p = cache.get(key);
    if (!p) {
      budget.charge(d.size);
      p = cas.getMessage(DirectorySchema, d, "input directory");
      cache.set(key, p);
    }
    return p;
  };

  // Breadth-first, a bounded number of Directory reads at a time.
  let level: { path: string; digest: Digest }[] = [{ path: root, digest: rootDigest }];
  while (level.length > 0) {
    const next: { path: string; digest: Digest }[] = [];
    for (
      const slice of sliceByBytes(
        level.map((e) => ({ ...e, size: e.digest.size })),
        DIRECTORY_FETCH_CONCURRENCY,
      )
    ) {
      const fetched = await Promise.all(slice.map((e) => fetchDir(e.digest)));
      slice.forEach((entry, j) => {
        const dir = fetched[j]!;
        count(dir.files.length + dir.symlinks.length + dir.directories.length);
        for (const f of dir.files) {
          files.push({
            path: join(entry.path, f.name),
            digest: fromProto(f.digest),
            executable: f.isExecutable,
          });
        }
        for (const s of dir.symlinks) symlinks.push({ path: join(entry.path, s.name), target: s.target });
        for (const d of dir.directories) {
          const path = join(entry.path, d.name);
          dirs.push(path);
          next.push({ path, digest: fromProto(d.digest) });
        }
      });
    }
    level = next;
  }

  if (owner) await Deno.chown(root, owner.uid, owner.gid);
  for (const d of dirs) {
    await Deno.mkdir(d);
    if (owner) await Deno.chown(d, owner.uid, owner.gid);
  }
  await cas.ensureLocal(files.map((f) => f.digest));
  let bytes = 0;
  await mapLimit(files, LINK_CONCURRENCY, async (f) => {
    await cas.linkInto(f.digest, f.executable, f.path);
    bytes += f.digest.size;
  });
  await createSymlinks(symlinks);
  return { files: files.length, directories: dirs.length, bytes };
}

/**
 * Creates symlinks. Deno refuses `Deno.symlink` under path-scoped permissions (as the worker process runs),
 * so then they are made by one `xargs -0 -n 2 ln -sT --` process fed NUL-separated pairs.
 */
export async function createSymlinks(
  links: readonly { readonly target: string; readonly path: string }[],
): Promise<void> {
  if (links.length === 0) return;
  try {
    for (const l of links) await Deno.symlink(l.target, l.path);
    return;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotCapable)) throw err;
  }
  const pending = [];
  for (const l of links) {
    if (await Deno.lstat(l.path).then(() => true, () => false)) continue;
    if (l.target.includes("\0") || l.path.includes("\0")) {
      throw new CairnError(Code.InvalidArgument, `Invalid symlink ${JSON.stringify(l.path)}: NUL byte`);
    }
    pending.push(l.target, l.path);
  }
  const child = new Deno.Command(XARGS, {
    args: ["-0", "-n", "2", "/usr/bin/ln", "-sT", "--"],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(pending.map((x) => `${x}\0`).join("")));
  await writer.close();
  const out = await child.output();
  if (!out.success) {
    throw new CairnError(
      Code.Internal,
      `Cannot create input symlinks: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

/** The program used to create symlinks under scoped permissions (see {@linkcode createSymlinks}). */
export const XARGS = "/usr/bin/xargs";

function join(dir: string, name: string): string {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new CairnError(Code.InvalidArgument, `Invalid name ${JSON.stringify(name)} in the input tree`);
  }
  return `${dir}/${name}`;
}
