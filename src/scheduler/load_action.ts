/**
 * Loads and checks an action before it is scheduled: the Action and its Command must be in the CAS, and so
 * must the whole input tree (every Directory, read level by level, then one FindMissing over all file
 * digests). Missing blobs → FAILED_PRECONDITION with `google.rpc.PreconditionFailure` violations
 * `{type: "MISSING", subject: "blobs/{hash}/{size}"}` (what Bazel needs to re-upload them). Output paths or a
 * working directory that escape the input root → INVALID_ARGUMENT.
 *
 * @example
 * ```ts ignore
 * import { loadAction } from "./load_action.ts";
 * const { action, command, platform } = await loadAction(cas, actionDigest);
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type Action,
  ActionSchema,
  type Command,
  CommandSchema,
  DirectorySchema,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { PreconditionFailureSchema } from "../gen/google/rpc/error_details_pb.ts";
import { type Digest, formatDigest, fromProto } from "../digest/digest.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code } from "../util/error.ts";
import { readMessage } from "./read_message.ts";
import { sliceByBytes, TreeBudget } from "../util/limits.ts";
import type { PlatformProperty } from "./types.ts";

/** How many Directory reads run at once while walking an input tree. */
const READ_CONCURRENCY = 64;
/** Digests per FindMissing call. */
const HAS_BATCH = 10_000;

/** A loaded, checked action. */
export interface LoadedAction {
  readonly action: Action;
  readonly command: Command;
  /** `Action.platform`, or `Command.platform` when the action names none. */
  readonly platform: PlatformProperty[];
}

/** FAILED_PRECONDITION listing missing blobs as PreconditionFailure violations. */
export function missingBlobsError(what: string, missing: readonly Digest[]): CairnError {
  const shown = missing.slice(0, 5).map(formatDigest).join(", ");
  const more = missing.length > 5 ? ` and ${missing.length - 5} more` : "";
  return new CairnError(
    Code.FailedPrecondition,
    `${what}: ${missing.length} blob${
      missing.length === 1 ? " is" : "s are"
    } missing from the CAS (${shown}${more})`,
    {
      details: [{
        typeName: "google.rpc.PreconditionFailure",
        value: create(PreconditionFailureSchema, {
          violations: missing.map((d) => ({
            type: "MISSING",
            subject: `blobs/${d.hash}/${d.size}`,
            description: "not in the CAS",
          })),
        }),
      }],
    },
  );
}

/** Reads just the Action; FAILED_PRECONDITION (MISSING) when absent. */
export async function readAction(cas: StoreDriver, actionDigest: Digest): Promise<Action> {
  const action = await readMessage(cas, actionDigest, ActionSchema);
  if (action === undefined) throw missingBlobsError(`Action ${formatDigest(actionDigest)}`, [actionDigest]);
  return action;
}

/** Reads the Command and walks the input tree of an Action; throws as described in the module doc. */
export async function loadCommandAndInputs(
  cas: StoreDriver,
  actionDigest: Digest,
  action: Action,
): Promise<LoadedAction> {
  const what = `Action ${formatDigest(actionDigest)}`;
  if (action.commandDigest === undefined) {
    throw new CairnError(Code.InvalidArgument, `${what} has no command_digest`);
  }
  if (action.inputRootDigest === undefined) {
    throw new CairnError(Code.InvalidArgument, `${what} has no input_root_digest`);
  }
  const commandDigest = fromProto(action.commandDigest);
  const inputRoot = fromProto(action.inputRootDigest);
  const [command, missingInputs] = await Promise.all([
    readMessage(cas, commandDigest, CommandSchema),
    findMissingInputs(cas, inputRoot),
  ]);
  const missing = command === undefined ? [commandDigest, ...missingInputs] : missingInputs;
  if (missing.length > 0 || command === undefined) throw missingBlobsError(what, missing);
  checkPaths(what, command);
  const platform = (action.platform?.properties.length ? action.platform : command.platform)?.properties ??
    [];
  return { action, command, platform: platform.map((p) => ({ name: p.name, value: p.value })) };
}

/** Reads an Action, its Command and checks its inputs. */
export async function loadAction(cas: StoreDriver, actionDigest: Digest): Promise<LoadedAction> {
  return await loadCommandAndInputs(cas, actionDigest, await readAction(cas, actionDigest));
}

/** Every blob of the input tree under `root` that the CAS lacks (directories and files). */
export async function findMissingInputs(cas: StoreDriver, root: Digest): Promise<Digest[]> {
  const missing: Digest[] = [];
  const files = new Map<string, Digest>();
  const seen = new Set<string>([formatDigest(root)]);
  const budget = new TreeBudget(`Input tree ${formatDigest(root)}`);
  let level: Digest[] = [root];
  while (level.length > 0) {
    const next: Digest[] = [];
    for (const slice of sliceByBytes(level, READ_CONCURRENCY)) {
      for (const d of slice) budget.charge(d.size);
      const dirs = await Promise.all(
        slice.map((d) => d.size === 0 ? undefined : readMessage(cas, d, DirectorySchema)),
      );
      dirs.forEach((dir, j) => {
        const digest = slice[j]!;
        if (digest.size === 0) return; // the empty Directory is the empty blob, always present
        if (dir === undefined) {
          missing.push(digest);
          return;
        }
        for (const f of dir.files) {
          const d = fromProto(f.digest);
          if (d.size > 0) files.set(formatDigest(d), d);
        }
        for (const sub of dir.directories) {
          const d = fromProto(sub.digest);
          const key = formatDigest(d);
          if (!seen.has(key)) {
            seen.add(key);
            next.push(d);
          }
        }
      });
    }
    level = next;
  }
  const all = [...files.values()];
  for (let i = 0; i < all.length; i += HAS_BATCH) {
    const batch = all.slice(i, i + HAS_BATCH);
    const sizes = await cas.hasMany(batch);
    batch.forEach((d, j) => {
      if (sizes[j] === undefined) missing.push(d);
    });
  }
  return missing;
}

function checkPaths(what: string, command: Command): void {
  const wd = command.workingDirectory;
  if (wd.startsWith("/") || escapes([], wd)) {
    throw new CairnError(Code.InvalidArgument, `${what}: working_directory "${wd}" escapes the input root`);
  }
  const fields: [string, string[]][] = [
    ["output_files", command.outputFiles],
    ["output_directories", command.outputDirectories],
    ["output_paths", command.outputPaths],
  ];
  for (const [field, paths] of fields) {
    for (const p of paths) {
      if (p.startsWith("/")) {
        throw new CairnError(Code.InvalidArgument, `${what}: ${field} entry "${p}" is an absolute path`);
      }
      if (escapes(wd.split("/"), p)) {
        throw new CairnError(Code.InvalidArgument, `${what}: ${field} entry "${p}" escapes the input root`);
      }
    }
  }
}

function escapes(base: string[], path: string): boolean {
  let depth = 0;
  for (const seg of [...base, ...path.split("/")]) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (--depth < 0) return true;
    } else {
      depth++;
    }
  }
  return false;
}
