/**
 * Runs one action on the local worker, start to finish: fetch the Action (if the scheduler did not send
 * it) and Command, check output paths and timeout, lay out inputs, run the command in the sandbox with
 * stdout/stderr streamed to files, upload outputs (each digest once), build the ActionResult with its
 * execution metadata, write it to the action cache when allowed, and clean the action's directory.
 *
 * Directory layout under `work_directory`: `actions/<id>/` (bound read-write into the sandbox; the
 * `action_directory` of `additional_environment`), `actions/<id>/root/` (the input root),
 * `logs/<id>.stdout|.stderr` (outside the sandbox), `exec/` (executable input variants).
 *
 * @example
 * ```ts ignore
 * import { runAction } from "./run_action.ts";
 * const outcome = await runAction(ctx, startExecution, abortSignal);
 * if ("response" in outcome) console.log(outcome.response.result?.exitCode);
 * ```
 * @module
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { durationMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Digest, formatDigest, fromProto } from "../digest/digest.ts";
import {
  type Action,
  ActionResultSchema,
  ActionSchema,
  type Command,
  CommandSchema,
  DigestFunction_Value,
  DigestSchema,
  ExecutedActionMetadataSchema,
  type ExecuteResponse,
  ExecuteResponseSchema,
  type Platform_Property,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import type { StartExecution } from "../gen/cairn/worker/v1/worker_api_pb.ts";
import { type Status, StatusSchema } from "../gen/google/rpc/status_pb.ts";
import { acKey, putBytes } from "../store/helpers.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code, codeName } from "../util/error.ts";
import {
  collectOutputs,
  createOutputParents,
  digestFile,
  planOutputs,
  uploadBlobs,
} from "./collect_outputs.ts";
import type { ResolvedWorkerSpec } from "./local_worker_spec.ts";
import { materializeInputs } from "./materialize_inputs.ts";
import { readSmallFileNoFollow } from "./safe_fs.ts";
import type { Sandbox } from "./sandbox.ts";
import type { WorkerCas } from "./worker_cas.ts";
import type { WorkerLog } from "./worker_log.ts";

/** What an action needs from its worker. */
export interface ActionContext {
  readonly spec: ResolvedWorkerSpec;
  readonly cas: WorkerCas;
  readonly acStore: StoreDriver | undefined;
  readonly sandbox: Sandbox;
  readonly workerId: () => string;
  readonly log: WorkerLog;
}

/** The terminal outcome: a response for the client, or an infrastructure failure for the scheduler. */
export type ActionOutcome = { readonly response: ExecuteResponse } | { readonly internalError: Status };

/** Values of `allow_network_property` that grant network access. */
const NETWORK_ON = new Set(["on", "true", "1", "yes", "allow", "allowed"]);

/** Runs `task`; never throws (failures become an outcome). `signal` kills a running command. */
export async function runAction(
  ctx: ActionContext,
  task: StartExecution,
  signal: AbortSignal,
  deferCleanup?: (cleanup: () => Promise<void>) => void,
): Promise<ActionOutcome> {
  const id = safeId(task.operationId);
  const actionDir = `${ctx.spec.workDirectory}/actions/${id}`;
  const root = `${actionDir}/root`;
  const stdoutPath = `${ctx.spec.workDirectory}/logs/${id}.stdout`;
  const stderrPath = `${ctx.spec.workDirectory}/logs/${id}.stderr`;
  const meta = create(ExecutedActionMetadataSchema, { worker: ctx.workerId() });
  if (task.queuedTimestamp) meta.queuedTimestamp = task.queuedTimestamp;
  meta.workerStartTimestamp = now();
  try {
    if (
      task.digestFunction !== DigestFunction_Value.UNKNOWN &&
      task.digestFunction !== DigestFunction_Value.SHA256
    ) {
      throw new CairnError(
        Code.InvalidArgument,
        `Unsupported digest function ${task.digestFunction}: only SHA256`,
      );
    }
    const actionDigest = fromProto(task.actionDigest);
    const action: Action = task.action ?? await ctx.cas.getMessage(ActionSchema, actionDigest, "action");
    const command: Command = await ctx.cas.getMessage(
      CommandSchema,
      fromProto(action.commandDigest),
      "command",
    );
    const plan = planOutputs(command);
    const timeoutS = effectiveTimeout(ctx.spec, action);
    if (command.arguments.length === 0) {
      throw new CairnError(Code.InvalidArgument, "The command has no arguments");
    }

    const owner = ctx.sandbox.actionUser;
    await Deno.mkdir(root, { recursive: true });
    await Deno.mkdir(`${ctx.spec.workDirectory}/logs`, { recursive: true });
    if (owner) await Deno.chown(actionDir, owner.uid, owner.gid);

    meta.inputFetchStartTimestamp = now();
    await materializeInputs(ctx.cas, fromProto(action.inputRootDigest), root, owner);
    await createOutputParents(root, plan, owner);
    meta.inputFetchCompletedTimestamp = now();

    const properties = task.platformProperties.length > 0
      ? task.platformProperties
      : [...(command.platform?.properties ?? []), ...(action.platform?.properties ?? [])];
    const env = buildEnvironment(ctx.spec, command, properties, timeoutS, actionDir);
    const allowNetwork = ctx.spec.allowNetworkProperty !== undefined &&
      properties.some((p) =>
        p.name === ctx.spec.allowNetworkProperty && NETWORK_ON.has(p.value.toLowerCase())
      );
    const cwd = plan.workingDirectory ? `${root}/${plan.workingDirectory}` : root;

    meta.executionStartTimestamp = now();
    const run = await ctx.sandbox.run({
      argv: [...ctx.spec.entrypoint, ...command.arguments],
      writableDir: actionDir,
      cwd,
      env,
      stdoutPath,
      stderrPath,
      timeoutMs: timeoutS * 1000,
      allowNetwork,
      signal,
      maxLogBytes: ctx.spec.limits.maxOutputBytes,
    });
    meta.executionCompletedTimestamp = now();
    let timedOut = run.timedOut;
    if (Object.values(ctx.spec.additionalEnvironment).includes("side_channel_file")) {
      timedOut ||= await sideChannelSaysTimeout(`${actionDir}/side_channel.json`);
    }

    meta.outputUploadStartTimestamp = now();
    const stdoutDigest = await digestFile(stdoutPath);
    const stderrDigest = await digestFile(stderrPath);
    const logs = [{ digest: stdoutDigest, path: stdoutPath }, { digest: stderrDigest, path: stderrPath }];
    const maxOutputBytes = ctx.spec.limits.maxOutputBytes;
    // A limit the action broke: the client gets its logs and this status, never its outputs.
    let limitStatus: Status | undefined;
    if (run.logLimitExceeded) {
      limitStatus = create(StatusSchema, {
        code: Code.ResourceExhausted,
        message: `Action ${formatDigest(actionDigest)} was killed: its stdout and stderr passed ` +
          `limits.max_output_bytes ${maxOutputBytes}`,
      });
    }
    // After a timeout or kill only the output so far is kept; outputs may be half-written.
    let outputs: Awaited<ReturnType<typeof collectOutputs>> | undefined;
    if (!timedOut && !run.killed && !limitStatus) {
      try {
        outputs = await collectOutputs(root, plan, {
          maxOutputBytes,
          warn: (m) => ctx.log.warn(`Action ${task.operationId}: ${m}`),
        });
      } catch (err) {
        const e = CairnError.from(err);
        if (e.code !== Code.ResourceExhausted) throw e;
        limitStatus = create(StatusSchema, { code: e.code, message: e.message });
      }
    }
    await uploadBlobs(ctx.cas.store, [...logs, ...(outputs?.blobs ?? [])]);
    meta.outputUploadCompletedTimestamp = now();

    const result = create(ActionResultSchema, {
      exitCode: run.exitCode,
      stdoutDigest: toProto(stdoutDigest),
      stderrDigest: toProto(stderrDigest),
      outputFiles: outputs?.outputFiles ?? [],
      outputDirectories: outputs?.outputDirectories ?? [],
      outputSymlinks: outputs?.outputSymlinks ?? [],
      outputFileSymlinks: outputs?.outputFileSymlinks ?? [],
      outputDirectorySymlinks: outputs?.outputDirectorySymlinks ?? [],
    });
    meta.workerCompletedTimestamp = now();
    result.executionMetadata = meta;

    let status: Status = create(StatusSchema, { code: Code.Ok, message: "" });
    if (limitStatus) {
      status = limitStatus;
    } else if (timedOut) {
      status = create(StatusSchema, {
        code: Code.DeadlineExceeded,
        message: `Action ${formatDigest(actionDigest)} timed out after ${timeoutS}s`,
      });
    } else if (run.killed) {
      status = create(StatusSchema, { code: Code.Cancelled, message: "Action was killed on request" });
    } else if (
      ctx.acStore && task.uploadToActionCache && !action.doNotCache && wantsUpload(ctx.spec, run.exitCode)
    ) {
      await putBytes(ctx.acStore, acKey(actionDigest), toBinary(ActionResultSchema, result));
    }
    const maxFile = ctx.spec.limits.maxFileSizeBytes;
    const message = run.exitCode === 128 + 25 && maxFile > 0
      ? `The action exited with code 153 (SIGXFSZ): a file it wrote probably passed limits.max_file_size_bytes ${maxFile}`
      : "";
    return { response: create(ExecuteResponseSchema, { result, cachedResult: false, status, message }) };
  } catch (err) {
    const e = CairnError.from(err);
    ctx.log.warn(`Action ${task.operationId} failed: ${codeName(e.code)}: ${e.message}`);
    if (e.code === Code.InvalidArgument || e.code === Code.FailedPrecondition) {
      // The client's fault (bad paths, missing inputs): tell the client.
      return {
        response: create(ExecuteResponseSchema, {
          status: create(StatusSchema, { code: e.code, message: e.message }),
        }),
      };
    }
    return { internalError: create(StatusSchema, { code: e.code, message: e.message }) };
  } finally {
    const cleanup = async () => {
      await removeTree(actionDir).catch((err) =>
        ctx.log.warn(`Cannot clean ${actionDir}: ${(err as Error).message}`)
      );
      await Deno.remove(stdoutPath).catch(() => {});
      await Deno.remove(stderrPath).catch(() => {});
    };
    // The caller may report the result first and clean afterwards (it keeps the slot until then).
    if (deferCleanup) deferCleanup(cleanup);
    else await cleanup();
  }
}

/** The action's timeout in seconds, bounded by `max_action_timeout`; longer requests are refused. */
export function effectiveTimeout(spec: ResolvedWorkerSpec, action: Action): number {
  const max = spec.maxActionTimeoutS;
  if (spec.timeoutHandledExternally || !action.timeout) return max;
  const requested = durationMs(action.timeout) / 1000;
  if (requested <= 0) return max;
  if (requested > max) {
    throw new CairnError(
      Code.InvalidArgument,
      `Action timeout ${requested}s exceeds this worker's max_action_timeout of ${max}s`,
    );
  }
  return requested;
}

function buildEnvironment(
  spec: ResolvedWorkerSpec,
  command: Command,
  properties: readonly Platform_Property[],
  timeoutS: number,
  actionDir: string,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const v of command.environmentVariables) env[v.name] = v.value;
  for (const [name, source] of Object.entries(spec.additionalEnvironment)) {
    if (source === "from_environment") {
      const v = Deno.env.get(name);
      if (v !== undefined) env[name] = v;
    } else if (source === "timeout_millis") {
      env[name] = String(Math.round(timeoutS * 1000));
    } else if (source === "side_channel_file") {
      env[name] = `${actionDir}/side_channel.json`;
    } else if (source === "action_directory") {
      env[name] = actionDir;
    } else if ("value" in source) {
      env[name] = source.value;
    } else if ("property" in source) {
      const p = properties.find((x) => x.name === source.property);
      if (p) env[name] = p.value;
    }
  }
  return env;
}

async function sideChannelSaysTimeout(path: string): Promise<boolean> {
  try {
    // The action can write this file: never follow a symlink there nor block on a FIFO.
    const text = await readSmallFileNoFollow(path, 64 * 1024);
    if (text === undefined) return false;
    return text.trim() !== "" && (JSON.parse(text) as { failure?: string }).failure === "timeout";
  } catch {
    return false;
  }
}

function wantsUpload(spec: ResolvedWorkerSpec, exitCode: number): boolean {
  switch (spec.uploadStrategy) {
    case "never":
      return false;
    case "everything":
      return true;
    case "failures_only":
      return exitCode !== 0;
    default:
      return exitCode === 0;
  }
}

/** Removes a directory tree even when the action left read-only directories in it. */
export async function removeTree(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    await makeWritable(path);
    await Deno.remove(path, { recursive: true });
  }
}

async function makeWritable(path: string): Promise<void> {
  const info = await Deno.lstat(path).catch(() => undefined);
  if (!info?.isDirectory) return;
  await Deno.chmod(path, 0o755).catch(() => {});
  for await (const e of Deno.readDir(path)) {
    if (e.isDirectory) await makeWritable(`${path}/${e.name}`);
  }
}

function safeId(operationId: string): string {
  const cleaned = operationId.replace(/[^A-Za-z0-9._-]/g, "_").slice(-100);
  return `${cleaned || "op"}-${crypto.randomUUID().slice(0, 8)}`;
}

function now() {
  return timestampFromDate(new Date());
}

function toProto(d: Digest) {
  return create(DigestSchema, { hash: d.hash, sizeBytes: BigInt(d.size) });
}
