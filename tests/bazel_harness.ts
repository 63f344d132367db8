/**
 * Real-Bazel (4.2.3, Debian's bazel-bootstrap) test harness.
 *
 * The workspace in `tests/bazel_workspace/` is copied to a temporary directory per
 * {@link prepareWorkspace} call, with its own `--output_user_root` / `--output_base`, so
 * tests never write into the repository and never share a Bazel server. Bazel builds fully
 * offline: the external repositories Bazel 4.2.3 would download (`rules_cc`, `rules_java`,
 * `remote_coverage_tools`) are replaced by tiny local repos from `tests/bazel/` through
 * `--override_repository` (see {@link OFFLINE_FLAGS}).
 *
 * Prepare one workspace per test file and reuse it (`bazelClean` between phases): the
 * server start costs ~3 s, the first build in a fresh server ~10 s (cold JVM), a clean
 * rebuild in a warm server ~3 s, a clean `bazel test //...` ~6 s, a no-op ~1 s (2 loaded cores).
 *
 * @example
 * ```ts ignore
 * const ws = await prepareWorkspace();
 * try {
 *   const r = await runBazel(ws, ["build", "//..."], {
 *     flags: ["--remote_cache=grpc://127.0.0.1:50051"],
 *   });
 *   assert.equal(r.code, 0, r.stderr);
 *   assert.equal(r.processes?.remoteCacheHit, 0);
 *   const first = await outputsDigest(ws);
 *   await bazelClean(ws);
 *   const again = await runBazel(ws, ["build", "//..."], { flags: [...] });
 *   assert.equal(again.processes?.remoteCacheHit, WORKSPACE_CACHEABLE_ACTIONS);
 *   assert.deepEqual(await outputsDigest(ws), first);
 * } finally {
 *   await ws.cleanup();
 * }
 * ```
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";

const TESTS_DIR = new URL(".", import.meta.url).pathname;

/** The committed test workspace (copied per test, never built in place). */
export const WORKSPACE_SOURCE = `${TESTS_DIR}bazel_workspace`;

/** Local stand-ins for the repositories Bazel 4.2.3 downloads by default. */
export const OVERRIDE_REPOS_DIR = `${TESTS_DIR}bazel`;

/**
 * `--override_repository` flags that let Bazel 4.2.3 build genrules, `cc_*` and `sh_test`
 * without network. `@platforms` and `@local_config_cc` need nothing: the first ships in
 * Bazel's install base, the second auto-configures from the host gcc.
 */
export const OFFLINE_FLAGS: readonly string[] = [
  "remote_coverage_tools",
  "rules_cc",
  "rules_java",
].map((name) => `--override_repository=${name}=${OVERRIDE_REPOS_DIR}/${name}`);

/**
 * Flags every build-like command gets. `--nosandbox_debug` undoes Debian's
 * `/etc/bazel/bazelrc` (`build --sandbox_debug`), which otherwise writes linux-sandbox
 * debug lines (with timestamps) into every action's stderr. `--incompatible_strict_action_env`
 * keeps action keys independent of the caller's PATH, so cache keys are stable between
 * runs and machines. `--disk_cache=` makes sure no disk cache is in play.
 */
export const COMMON_BUILD_FLAGS: readonly string[] = [
  "--color=no",
  "--curses=no",
  "--noshow_progress",
  "--nosandbox_debug",
  "--incompatible_strict_action_env",
  "--disk_cache=",
  "--remote_timeout=30s",
];

/** Bazel commands that accept build options (and so get {@link COMMON_BUILD_FLAGS}). */
const BUILD_COMMANDS = new Set(["build", "test", "run", "cquery", "aquery", "coverage", "info"]);

/**
 * Number of spawns in `bazel test //...` on this workspace that are cacheable (genrules,
 * compiles, links, the test and its XML report). A cold build prints
 * `INFO: 32 processes: 17 internal, 15 linux-sandbox.`; after `bazel clean` with a warm
 * remote cache it prints `INFO: 32 processes: 15 remote cache hit, 17 internal.`
 */
export const WORKSPACE_TEST_SPAWNS = 15;

/** Same for `bazel build //...` (no test action): `31 processes: 18 internal, 13 linux-sandbox.` */
export const WORKSPACE_BUILD_SPAWNS = 13;

/** Expected contents of the workspace's text outputs (paths relative to `bazel-bin`). */
export const EXPECTED_TEXT_OUTPUTS: Readonly<Record<string, string>> = {
  "words.txt": "alpha\nbeta\ngamma\n",
  "counted.txt": "3\nalpha\nbeta\ngamma\n",
  "split/a.txt": "alpha\n",
  "split/b.txt": "beta\n",
  "split/c.txt": "gamma\n",
  "shout.txt": "3\nALPHA\nBETA\nGAMMA\n",
  "hello_out.txt": "hello, genrule!\ntriangle(10) = 55\n",
};

/** Main outputs of `bazel build //...` relative to `bazel-bin` (text outputs plus C++ artifacts). */
export const MAIN_OUTPUTS: readonly string[] = [
  ...Object.keys(EXPECTED_TEXT_OUTPUTS),
  "hello",
  "libgreet.a",
  "libgreet.so",
];

/** A copy of the test workspace with its own Bazel output base. */
export interface BazelWorkspace {
  /** The workspace directory (contains WORKSPACE, BUILD, and after a build the bazel-* symlinks). */
  readonly dir: string;
  /** `--output_base` of this workspace's Bazel server. */
  readonly outputBase: string;
  /** `--output_user_root` (holds the repository cache). */
  readonly outputUserRoot: string;
  /** Startup options passed before every command. */
  readonly startupOptions: readonly string[];
  /** Shuts the Bazel server down and removes every temporary file. Idempotent. */
  cleanup(): Promise<void>;
}

/** Counts from Bazel 4.2.3's `INFO: N processes: ...` summary line. */
export interface ProcessSummary {
  /** The line as printed, e.g. `INFO: 32 processes: 15 remote cache hit, 17 internal.` */
  readonly line: string;
  readonly total: number;
  readonly internal: number;
  readonly remoteCacheHit: number;
  /** Spawns executed by a remote executor. */
  readonly remote: number;
  readonly local: number;
  readonly linuxSandbox: number;
  readonly processwrapperSandbox: number;
  readonly worker: number;
  /** Every kind as printed (`"remote cache hit"`, `"linux-sandbox"`, …) → count. */
  readonly byKind: Readonly<Record<string, number>>;
}

/** Outcome of one Bazel command. */
export interface BazelResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Parsed process summary, or undefined when Bazel printed none (e.g. `clean`, `shutdown`). */
  readonly processes: ProcessSummary | undefined;
  /** From `INFO: Build completed successfully, N total actions`, if printed. */
  readonly totalActions: number | undefined;
  /** Wall-clock time of the client command in milliseconds. */
  readonly wallMs: number;
}

/** Options for {@link runBazel}. */
export interface RunBazelOptions {
  /** Extra flags placed after the common ones (e.g. `--remote_cache=grpc://...`). */
  readonly flags?: readonly string[];
  /** Extra environment variables for the Bazel client. */
  readonly env?: Readonly<Record<string, string>>;
  /** Kill the client after this many milliseconds (default 300 000). */
  readonly timeoutMs?: number;
  /** `--jobs` (default 4). */
  readonly jobs?: number;
}

let available: Promise<boolean> | undefined;

/**
 * Whether a `bazel` binary is on PATH and runnable (client only, starts no server).
 *
 * @example
 * ```ts ignore
 * assert.ok(await bazelAvailable(), "install bazel-bootstrap");
 * ```
 */
export function bazelAvailable(): Promise<boolean> {
  available ??= (async () => {
    try {
      const out = await new Deno.Command("bazel", { args: ["--version"], stdout: "null", stderr: "null" })
        .output();
      return out.success;
    } catch {
      return false;
    }
  })();
  return available;
}

/**
 * Copies the test workspace to a fresh temporary directory with its own output base.
 * Call `cleanup()` when done (it runs `bazel shutdown` and deletes everything).
 *
 * @example
 * ```ts ignore
 * const ws = await prepareWorkspace({ maxIdleSecs: 30 });
 * try { await runBazel(ws, ["build", "//:words"]); } finally { await ws.cleanup(); }
 * ```
 */
export async function prepareWorkspace(
  opts: {
    readonly maxIdleSecs?: number;
    /** The workspace to copy (default {@link WORKSPACE_SOURCE}); e.g. one a benchmark generated. */
    readonly source?: string;
  } = {},
): Promise<BazelWorkspace> {
  const root = await Deno.makeTempDir({ prefix: "cairn_bazel_" });
  const dir = `${root}/ws`;
  const outputUserRoot = `${root}/user_root`;
  const outputBase = `${root}/base`;
  await copyTree(opts.source ?? WORKSPACE_SOURCE, dir);
  await Deno.mkdir(outputUserRoot);
  const startupOptions = [
    "--nohome_rc",
    `--output_user_root=${outputUserRoot}`,
    `--output_base=${outputBase}`,
    `--max_idle_secs=${opts.maxIdleSecs ?? 30}`,
  ];
  let cleaned: Promise<void> | undefined;
  const ws: BazelWorkspace = {
    dir,
    outputBase,
    outputUserRoot,
    startupOptions,
    cleanup() {
      cleaned ??= (async () => {
        try {
          await shutdownBazel(ws);
        } finally {
          await removeTree(root);
        }
      })();
      return cleaned;
    },
  };
  return ws;
}

/**
 * Runs `bazel <command> [common flags] [opts.flags] [rest]` in the workspace. Build-like
 * commands (build, test, run, cquery, aquery, coverage, info) always get the offline
 * overrides and {@link COMMON_BUILD_FLAGS}. Never throws on a non-zero exit: check `code`.
 *
 * @example
 * ```ts ignore
 * const r = await runBazel(ws, ["test", "//..."], { flags: ["--remote_cache=http://127.0.0.1:8080"] });
 * assert.equal(r.code, 0, r.stderr);
 * ```
 */
export async function runBazel(
  ws: BazelWorkspace,
  args: readonly string[],
  opts: RunBazelOptions = {},
): Promise<BazelResult> {
  const [command, ...rest] = args;
  if (command === undefined) throw new Error("Cannot run bazel: no command given");
  const flags = BUILD_COMMANDS.has(command)
    ? [...COMMON_BUILD_FLAGS, `--jobs=${opts.jobs ?? 4}`, ...OFFLINE_FLAGS, ...(opts.flags ?? [])]
    : ["--color=no", "--curses=no", ...(opts.flags ?? [])];
  const started = performance.now();
  const child = new Deno.Command("bazel", {
    args: [...ws.startupOptions, command, ...flags, ...rest],
    cwd: ws.dir,
    env: { ...opts.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timeoutMs = opts.timeoutMs ?? 300_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
  }, timeoutMs);
  let out: Deno.CommandOutput;
  try {
    out = await child.output();
  } finally {
    clearTimeout(timer);
  }
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr) +
    (timedOut ? `\n[bazel_harness] bazel ${command} killed after ${timeoutMs} ms\n` : "");
  return {
    code: out.code,
    stdout,
    stderr,
    processes: parseProcessSummary(stderr),
    totalActions: parseTotalActions(stderr),
    wallMs: performance.now() - started,
  };
}

/**
 * Runs a build-like command and throws (with Bazel's stderr) unless it exits 0.
 *
 * @example
 * ```ts ignore
 * const r = await runBazelOk(ws, ["build", "//..."]);
 * ```
 */
export async function runBazelOk(
  ws: BazelWorkspace,
  args: readonly string[],
  opts: RunBazelOptions = {},
): Promise<BazelResult> {
  const r = await runBazel(ws, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `bazel ${args.join(" ")} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`,
    );
  }
  return r;
}

/** Asserts that a Bazel command exited 0 and printed its process summary; returns its result. */
export function assertBazelOk(r: BazelResult, what: string): BazelResult {
  assert.equal(r.code, 0, `${what} exited ${r.code}\n--- stderr\n${r.stderr}`);
  assert.ok(r.processes, `${what}: no process summary\n${r.stderr}`);
  return r;
}

/** Asserts that every one of the `spawns` non-internal processes of a Bazel command was a remote cache hit. */
export function assertAllRemoteHits(r: BazelResult, spawns: number, what: string): void {
  const p = r.processes!;
  assert.equal(p.remoteCacheHit, spawns, `${what}: ${p.line}\n${r.stderr}`);
  assert.equal(p.total - p.internal, spawns, `${what}: ${p.line}`);
}

/**
 * `bazel clean` (keeps the server, drops outputs and the local action cache), so the next
 * build must execute or fetch every action again.
 *
 * @example
 * ```ts ignore
 * await bazelClean(ws);
 * ```
 */
export async function bazelClean(ws: BazelWorkspace): Promise<void> {
  const r = await runBazel(ws, ["clean"]);
  if (r.code !== 0) throw new Error(`bazel clean exited ${r.code}\n${r.stderr}`);
}

/**
 * Stops the workspace's Bazel server (no-op when none runs), so no process lingers.
 *
 * @example
 * ```ts ignore
 * await shutdownBazel(ws);
 * ```
 */
export async function shutdownBazel(ws: BazelWorkspace): Promise<void> {
  try {
    await Deno.stat(ws.outputBase);
  } catch {
    return; // No command ever ran: there is no server to stop.
  }
  const r = await runBazel(ws, ["shutdown"], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`bazel shutdown exited ${r.code}\n${r.stderr}`);
}

/**
 * SHA-256 of build outputs under the workspace's `bazel-bin`, keyed by path relative to
 * it. Without `paths`, every regular file under `bazel-bin` (symlinks and `*.runfiles`
 * trees skipped; host-configuration tools are not in `bazel-bin`). With
 * `--remote_download_minimal` outputs are not downloaded, so the map is empty or, for
 * explicit paths, this throws.
 *
 * @example
 * ```ts ignore
 * const before = await outputsDigest(ws, MAIN_OUTPUTS);
 * ```
 */
export async function outputsDigest(
  ws: BazelWorkspace,
  paths?: readonly string[],
): Promise<Map<string, string>> {
  const bin = `${ws.dir}/bazel-bin`;
  const rels = paths ? [...paths] : await listRegularFiles(bin);
  const out = new Map<string, string>();
  for (const rel of rels.sort()) {
    out.set(rel, await sha256File(`${bin}/${rel}`));
  }
  return out;
}

/**
 * Parses the last `INFO: N process(es)[: a kind, b kind].` line of Bazel's stderr.
 *
 * @example
 * ```ts ignore
 * parseProcessSummary("INFO: 32 processes: 15 remote cache hit, 17 internal.")?.remoteCacheHit; // 15
 * ```
 */
export function parseProcessSummary(stderr: string): ProcessSummary | undefined {
  const matches = [...stderr.matchAll(/^INFO: (\d+) process(?:es)?(?:: (.*?))?\.\s*$/gm)];
  const m = matches.at(-1);
  if (!m) return undefined;
  const byKind: Record<string, number> = {};
  for (const part of (m[2] ?? "").split(", ").filter((p) => p !== "")) {
    const pm = /^(\d+) (.+)$/.exec(part);
    if (!pm) throw new Error(`Cannot parse Bazel process summary part "${part}" in "${m[0]}"`);
    const kind = pm[2] as string;
    byKind[kind] = (byKind[kind] ?? 0) + Number(pm[1]);
  }
  const n = (k: string) => byKind[k] ?? 0;
  return {
    line: m[0].trim(),
    total: Number(m[1]),
    internal: n("internal"),
    remoteCacheHit: n("remote cache hit"),
    remote: n("remote"),
    local: n("local"),
    linuxSandbox: n("linux-sandbox"),
    processwrapperSandbox: n("processwrapper-sandbox"),
    worker: n("worker"),
    byKind,
  };
}

function parseTotalActions(stderr: string): number | undefined {
  const m = [...stderr.matchAll(/(\d+) total actions?/g)].at(-1);
  return m ? Number(m[1]) : undefined;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

async function listRegularFiles(root: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  const dir = prefix ? `${root}/${prefix}` : root;
  for await (const e of Deno.readDir(dir)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isSymlink) continue;
    if (e.isDirectory) {
      if (!e.name.endsWith(".runfiles")) out.push(...await listRegularFiles(root, rel));
    } else if (e.isFile) {
      out.push(rel);
    }
  }
  return out;
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    const src = `${from}/${e.name}`;
    const dst = `${to}/${e.name}`;
    if (e.isDirectory) {
      await copyTree(src, dst);
    } else if (e.isFile) {
      await Deno.copyFile(src, dst);
      // Scripts must stay executable even from a checkout that lost the mode bits.
      const mode = (await Deno.stat(src)).mode ?? 0o644;
      await Deno.chmod(dst, e.name.endsWith(".sh") ? mode | 0o755 : mode);
    }
  }
}

/** Removes a tree that may hold Bazel's read-only outputs and directories. */
async function removeTree(path: string): Promise<void> {
  await new Deno.Command("chmod", { args: ["-R", "u+w", path], stdout: "null", stderr: "null" }).output();
  await Deno.remove(path, { recursive: true });
}
