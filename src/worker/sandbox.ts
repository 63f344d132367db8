/**
 * The sandbox every action runs in.
 *
 * `bwrap` (bubblewrap, `/usr/bin/bwrap`): a fresh mount namespace holding only the action's input root
 * (its action directory bound read-write at its own path, so relative Bazel paths and the working directory work unchanged),
 * the read-only toolchain paths (`sandbox_paths`, default the system's `/usr`, `/bin`, `/lib`, `/lib64`,
 * `/lib32`, `/etc`, `/sbin`; symlinked ones such as `/bin → usr/bin` are recreated as symlinks), a fresh
 * `/proc`, a minimal `/dev` and an empty `/tmp`. It has its own PID, IPC, UTS and cgroup namespaces and no
 * network (a loopback-less network namespace) unless the action is allowed network. `--die-with-parent`
 * and the PID namespace mean killing bwrap kills every process of the action: nothing is left behind,
 * whether the action ends, times out or is killed.
 *
 * When the worker runs as root, the sandbox keeps no user namespace and drops to an unprivileged user
 * (`setpriv`, uid/gid 65534 by default) with no capabilities, so an action cannot write to its
 * hard-linked inputs (shared with the worker's CAS) or change their mode. As a non-root user bwrap adds a
 * user namespace (`--unshare-user`) and the action runs as that user.
 *
 * `none`: the command runs directly in the input root in its own session (`setsid`); the whole process
 * group is killed at the end or on timeout. No isolation; for hosts without bwrap (opt-in only).
 *
 * Resource limits (`limits` of the worker config) are rlimits set by `prlimit` (util-linux) just before
 * the action's command, after root is dropped, soft and hard alike so the action cannot raise them:
 * RLIMIT_NPROC (`max_processes`), RLIMIT_DATA (`max_memory_bytes`; the sandbox's `/tmp` tmpfs gets the same
 * size) and RLIMIT_FSIZE (`max_file_size_bytes`).
 *
 * stdout and stderr are streamed to files as they arrive (never held in memory), so a timed-out action's
 * output so far is kept. Together they may hold at most `maxLogBytes`; past that the action is killed.
 *
 * @example
 * ```ts ignore
 * import { createSandbox } from "./sandbox.ts";
 * const sandbox = await createSandbox({ kind: "bwrap" });
 * const r = await sandbox.run({
 *   argv: ["/bin/sh", "-c", "echo hi"], cwd: "/work/a/root", writableDir: "/work/a",
 *   env: {}, stdoutPath: "/work/a/stdout", stderrPath: "/work/a/stderr", timeoutMs: 10_000,
 * });
 * console.log(r.exitCode, r.timedOut);
 * ```
 * @module
 */
import { CairnError, Code } from "../util/error.ts";

/** Which isolation to use. */
export type SandboxKind = "bwrap" | "none";

/** Options of {@linkcode createSandbox}. */
export interface SandboxOptions {
  readonly kind: SandboxKind;
  /** Host paths bound read-only (default: the system directories that exist). */
  readonly readOnlyPaths?: readonly string[];
  /** The bwrap binary (default `/usr/bin/bwrap`, else `bwrap` on PATH). */
  readonly bwrapPath?: string;
  /** uid/gid actions run as when the worker is root (default 65534, "nobody"). */
  readonly actionUser?: { readonly uid: number; readonly gid: number };
  /** Rlimits of every action (0 or absent: none). Needs `prlimit` (util-linux). */
  readonly limits?: RlimitOptions;
}

/** Rlimits applied to an action's processes; 0 = no limit. */
export interface RlimitOptions {
  /** RLIMIT_NPROC. */
  readonly maxProcesses: number;
  /** RLIMIT_DATA, and the size of the sandbox's /tmp. */
  readonly maxMemoryBytes: number;
  /** RLIMIT_FSIZE. */
  readonly maxFileSizeBytes: number;
}

/** One command to run. */
export interface SandboxRun {
  /** argv[0] and arguments (argv[0] resolved against PATH of `env` when relative without a slash). */
  readonly argv: readonly string[];
  /** The directory bound read-write at its own path (the action directory holding the input root). */
  readonly writableDir: string;
  /** Working directory (inside `writableDir`). */
  readonly cwd: string;
  /** The complete environment of the command. */
  readonly env: Readonly<Record<string, string>>;
  readonly stdoutPath: string;
  readonly stderrPath: string;
  /** Kill after this many milliseconds (0 = no limit). */
  readonly timeoutMs: number;
  /** Share the host network (default false: no network at all). */
  readonly allowNetwork?: boolean;
  /** Kills the command when aborted (e.g. KillExecution). */
  readonly signal?: AbortSignal;
  /** stdout plus stderr may hold at most this many bytes; past it the command is killed (0: no limit). */
  readonly maxLogBytes?: number;
}

/** How the command ended. */
export interface SandboxResult {
  /** Exit code; 128+N when killed by signal N. */
  readonly exitCode: number;
  /** Killed because `timeoutMs` passed. */
  readonly timedOut: boolean;
  /** Killed because `signal` was aborted. */
  readonly killed: boolean;
  /** Killed because stdout plus stderr passed `maxLogBytes`. */
  readonly logLimitExceeded: boolean;
  readonly startedAt: Date;
  readonly endedAt: Date;
}

/** Runs commands in isolation. */
export interface Sandbox {
  readonly kind: SandboxKind;
  /** The uid/gid the action runs as, when the worker must hand it its directories (root workers). */
  readonly actionUser: { readonly uid: number; readonly gid: number } | undefined;
  run(run: SandboxRun): Promise<SandboxResult>;
}

/** System directories bound read-only by default, where they exist. */
export const DEFAULT_SANDBOX_PATHS: readonly string[] = [
  "/usr",
  "/bin",
  "/lib",
  "/lib64",
  "/lib32",
  "/etc",
  "/sbin",
];

const SETPRIV = "/usr/bin/setpriv";
/** util-linux's `prlimit`, which sets the action's rlimits and then runs its command. */
export const PRLIMIT = "/usr/bin/prlimit";

/** `prlimit` arguments for `limits` (empty when every limit is 0). */
export function prlimitArgs(limits: RlimitOptions | undefined): string[] {
  if (!limits) return [];
  const args: string[] = [];
  if (limits.maxProcesses > 0) args.push(`--nproc=${limits.maxProcesses}`);
  if (limits.maxMemoryBytes > 0) args.push(`--data=${limits.maxMemoryBytes}`);
  if (limits.maxFileSizeBytes > 0) args.push(`--fsize=${limits.maxFileSizeBytes}`);
  return args.length > 0 ? [PRLIMIT, ...args, "--"] : [];
}

/**
 * Checks that the sandbox can work here and returns it. With `kind: "bwrap"` a missing bwrap (or, for
 * root workers, a missing `setpriv`) is FAILED_PRECONDITION with a message naming `sandbox: "none"`.
 */
export async function createSandbox(options: SandboxOptions): Promise<Sandbox> {
  const isRoot = Deno.uid() === 0;
  if (options.kind === "none") {
    const setsid = await exists("/usr/bin/setsid") ? "/usr/bin/setsid" : await which("setsid");
    if (!setsid) {
      throw new CairnError(Code.FailedPrecondition, "Cannot start worker: setsid (util-linux) is missing");
    }
    return new NoSandbox(setsid, await limitsPrefix(options.limits));
  }
  const bwrap = options.bwrapPath ??
    (await exists("/usr/bin/bwrap") ? "/usr/bin/bwrap" : await which("bwrap"));
  if (!bwrap || !(await exists(bwrap))) {
    throw new CairnError(
      Code.FailedPrecondition,
      `Cannot start worker: bubblewrap (bwrap) is not installed, and actions must run sandboxed. ` +
        `Install bubblewrap, or set sandbox: "none" in the worker config to run actions without isolation`,
    );
  }
  if (isRoot && !(await exists(SETPRIV))) {
    throw new CairnError(
      Code.FailedPrecondition,
      `Cannot start worker: ${SETPRIV} (util-linux) is needed to drop root inside the bwrap sandbox`,
    );
  }
  const paths = options.readOnlyPaths ?? DEFAULT_SANDBOX_PATHS;
  const mounts: string[] = [];
  for (const p of paths) {
    if (!p.startsWith("/")) {
      throw new CairnError(
        Code.InvalidArgument,
        `Invalid sandbox_paths entry "${p}": must be an absolute path`,
      );
    }
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(p);
    } catch {
      if (options.readOnlyPaths) {
        throw new CairnError(
          Code.InvalidArgument,
          `Invalid sandbox_paths entry "${p}": no such file or directory`,
        );
      }
      continue;
    }
    if (info.isSymlink) mounts.push("--symlink", await Deno.readLink(p), p);
    else mounts.push("--ro-bind", p, p);
  }
  const covered = (file: string) =>
    paths.some((p) => file === p || file.startsWith(p.endsWith("/") ? p : `${p}/`));
  if (isRoot && !covered(SETPRIV)) mounts.push("--ro-bind", SETPRIV, SETPRIV);
  const prefix = await limitsPrefix(options.limits);
  if (prefix.length > 0 && !covered(PRLIMIT)) mounts.push("--ro-bind", PRLIMIT, PRLIMIT);
  const user = isRoot ? (options.actionUser ?? { uid: 65534, gid: 65534 }) : undefined;
  const setsid = await exists("/usr/bin/setsid") ? "/usr/bin/setsid" : await which("setsid");
  if (!setsid) {
    throw new CairnError(Code.FailedPrecondition, "Cannot start worker: setsid (util-linux) is missing");
  }
  // `--size` (a bounded /tmp) needs bubblewrap 0.6 or later; older ones keep an unbounded /tmp.
  const tmpBytes = (options.limits?.maxMemoryBytes ?? 0) > 0 && await bwrapHasSizeOption(bwrap)
    ? options.limits!.maxMemoryBytes
    : 0;
  return new BwrapSandbox(setsid, bwrap, mounts, user, prefix, tmpBytes);
}

/** Whether this bwrap knows `--size` (from its `--help`). */
async function bwrapHasSizeOption(bwrap: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(bwrap, {
      args: ["--help"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    return /^\s*--size\b/m.test(new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr));
  } catch {
    return false;
  }
}

/** The `prlimit … --` prefix of every command; FAILED_PRECONDITION when limits are set and prlimit is missing. */
async function limitsPrefix(limits: RlimitOptions | undefined): Promise<string[]> {
  const prefix = prlimitArgs(limits);
  if (prefix.length > 0 && !(await exists(PRLIMIT))) {
    throw new CairnError(
      Code.FailedPrecondition,
      `Cannot start worker: ${PRLIMIT} (util-linux) is needed to apply the worker's limits ` +
        `(set max_processes, max_memory_bytes and max_file_size_bytes to 0 to run without rlimits)`,
    );
  }
  return prefix;
}

/** `/a`, `/a/b` for `/a/b/c`: the directories above a path, outermost first. */
export function ancestorDirs(path: string): string[] {
  const parts = path.split("/").filter(Boolean);
  return parts.slice(0, -1).map((_, i) => "/" + parts.slice(0, i + 1).join("/"));
}

class BwrapSandbox implements Sandbox {
  readonly kind = "bwrap";
  #setsid: string;
  #bwrap: string;
  #mounts: readonly string[];
  #user: { uid: number; gid: number } | undefined;
  #prefix: readonly string[];
  #tmpBytes: number;

  constructor(
    setsid: string,
    bwrap: string,
    mounts: readonly string[],
    user: { uid: number; gid: number } | undefined,
    prefix: readonly string[],
    tmpBytes: number,
  ) {
    this.#setsid = setsid;
    this.#bwrap = bwrap;
    this.#mounts = mounts;
    this.#user = user;
    this.#prefix = prefix;
    this.#tmpBytes = tmpBytes;
  }

  get actionUser() {
    return this.#user;
  }

  run(run: SandboxRun): Promise<SandboxResult> {
    // No `--new-session`: bwrap already runs in a session of its own without a terminal (`setsid`), and its
    // sandbox init must stay in that session's process group. bwrap arms --die-with-parent only after its
    // parent has finished setting the sandbox up; a cancel in that window kills the parent while the init
    // carries on, and only the process-group kill reaches it then (with --new-session it escaped: an action
    // outlived its cancelled sandbox in 2 of 15 early cancels).
    const args = [
      "--die-with-parent",
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--unshare-cgroup-try",
      ...(this.#user ? [] : ["--unshare-user"]),
      ...(run.allowNetwork ? [] : ["--unshare-net"]),
      ...this.#mounts,
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--perms",
      "1777",
      ...(this.#tmpBytes > 0 ? ["--size", String(this.#tmpBytes)] : []),
      "--tmpfs",
      "/tmp",
      // bwrap would create the bind target's missing parents with mode 0700, which the unprivileged action
      // user cannot traverse; create them world-traversable first.
      ...ancestorDirs(run.writableDir).flatMap((d) => ["--perms", "0755", "--dir", d]),
      "--bind",
      run.writableDir,
      run.writableDir,
      "--chdir",
      run.cwd,
      "--",
      ...(this.#user
        ? [
          SETPRIV,
          `--reuid=${this.#user.uid}`,
          `--regid=${this.#user.gid}`,
          "--clear-groups",
          "--inh-caps=-all",
          "--bounding-set=-all",
          "--",
        ]
        : []),
      ...this.#prefix,
      ...run.argv,
    ];
    // bwrap runs as the leader of its own process group and the whole group is killed: a kill that lands
    // while bwrap is still setting up (before its sandbox init arms --die-with-parent) then still takes the
    // sandbox init, and with it every process of the action's PID namespace.
    return spawnAndWait(this.#setsid, [this.#bwrap, ...args], run, "/", true);
  }
}

class NoSandbox implements Sandbox {
  readonly kind = "none";
  readonly actionUser = undefined;
  #setsid: string;
  #prefix: readonly string[];

  constructor(setsid: string, prefix: readonly string[]) {
    this.#setsid = setsid;
    this.#prefix = prefix;
  }

  run(run: SandboxRun): Promise<SandboxResult> {
    return spawnAndWait(this.#setsid, [...this.#prefix, ...run.argv], run, run.cwd, true);
  }
}

async function spawnAndWait(
  program: string,
  args: string[],
  run: SandboxRun,
  cwd: string,
  killGroup: boolean,
): Promise<SandboxResult> {
  if (run.argv.length === 0) {
    throw new CairnError(Code.InvalidArgument, "Cannot run an action with an empty command");
  }
  const stdout = await Deno.open(run.stdoutPath, { write: true, create: true, truncate: true });
  const stderr = await Deno.open(run.stderrPath, { write: true, create: true, truncate: true });
  const startedAt = new Date();
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      cwd,
      env: { ...run.env },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    stdout.close();
    stderr.close();
    throw new CairnError(Code.Internal, `Cannot start ${program}: ${(err as Error).message}`, { cause: err });
  }
  let timedOut = false;
  let killed = false;
  const kill = () => {
    if (killGroup) killProcessGroup(child.pid);
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  };
  const timer = run.timeoutMs > 0
    ? setTimeout(() => {
      timedOut = true;
      kill();
    }, run.timeoutMs)
    : undefined;
  const onAbort = () => {
    killed = true;
    kill();
  };
  if (run.signal?.aborted) onAbort();
  run.signal?.addEventListener("abort", onAbort, { once: true });
  const stopPumps = new AbortController();
  // stdout and stderr share one budget; past it the rest is dropped and the command killed.
  const maxLog = run.maxLogBytes ?? 0;
  let logBytes = 0;
  let logLimitExceeded = false;
  const capped = () =>
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        if (maxLog <= 0) return controller.enqueue(chunk);
        const room = maxLog - logBytes;
        logBytes += chunk.byteLength;
        if (room > 0) controller.enqueue(room >= chunk.byteLength ? chunk : chunk.subarray(0, room));
        if (logBytes > maxLog && !logLimitExceeded) {
          logLimitExceeded = true;
          kill();
        }
      },
    });
  const pumps = Promise.all([
    child.stdout.pipeThrough(capped()).pipeTo(stdout.writable, { signal: stopPumps.signal }).catch(() => {}),
    child.stderr.pipeThrough(capped()).pipeTo(stderr.writable, { signal: stopPumps.signal }).catch(() => {}),
  ]);
  try {
    const status = await child.status;
    // In `none` mode, background processes of the action's group die with it.
    if (killGroup) kill();
    // A process that escaped (only possible without bwrap) may hold the pipes open: stop waiting soon.
    const grace = setTimeout(() => stopPumps.abort(), 2000);
    await pumps;
    clearTimeout(grace);
    const endedAt = new Date();
    const exitCode = status.signal ? 128 + signalNumber(status.signal) : status.code;
    return { exitCode, timedOut, killed: killed && !timedOut, logLimitExceeded, startedAt, endedAt };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    run.signal?.removeEventListener("abort", onAbort);
  }
}

/** The `kill` program, for process groups when Deno may not signal them itself. */
export const KILL_PROGRAM = "/usr/bin/kill";

/**
 * SIGKILLs a whole process group. `Deno.kill(-pgid)` needs unrestricted run permission, which a worker with
 * narrowed permissions lacks; it then uses the `kill` program (in its run allow-list) instead.
 */
function killProcessGroup(pgid: number): void {
  try {
    Deno.kill(-pgid, "SIGKILL");
    return;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied)) return;
  }
  try {
    new Deno.Command(KILL_PROGRAM, { args: ["-KILL", "--", `-${pgid}`], stdout: "null", stderr: "null" })
      .spawn().status.catch(() => {});
  } catch {
    // No kill program or no permission: the direct child kill below still stops the sandbox's parent.
  }
}

function signalNumber(signal: Deno.Signal): number {
  const table: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGILL: 4,
    SIGTRAP: 5,
    SIGABRT: 6,
    SIGBUS: 7,
    SIGFPE: 8,
    SIGKILL: 9,
    SIGUSR1: 10,
    SIGSEGV: 11,
    SIGUSR2: 12,
    SIGPIPE: 13,
    SIGALRM: 14,
    SIGTERM: 15,
    SIGSTKFLT: 16,
    SIGCHLD: 17,
    SIGCONT: 18,
    SIGSTOP: 19,
    SIGTSTP: 20,
    SIGTTIN: 21,
    SIGTTOU: 22,
    SIGURG: 23,
    SIGXCPU: 24,
    SIGXFSZ: 25,
    SIGVTALRM: 26,
    SIGPROF: 27,
    SIGWINCH: 28,
    SIGIO: 29,
    SIGPWR: 30,
    SIGSYS: 31,
  };
  return table[signal] ?? 0;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function which(name: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (dir && await exists(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}
