/**
 * Turning on Deno's built-in OpenTelemetry for an operator who set only the standard `OTEL_*` variables.
 *
 * Deno reads `OTEL_DENO=true` once, at process start. When `OTEL_EXPORTER_OTLP_ENDPOINT`,
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_SERVICE_NAME` is set and `OTEL_DENO` is not,
 * {@linkcode relaunchWithTelemetry} starts this very command again (read from `/proc/<pid>/cmdline`, so every
 * permission flag is kept) with `OTEL_DENO=true`, forwards SIGINT/SIGTERM/SIGHUP to it and returns its exit
 * code. The child inherits stdout and stderr; its stdin is a pipe the launcher holds, whose end tells the child
 * that the launcher died ({@linkcode watchLauncher}), so no server outlives a SIGKILLed launcher.
 * `OTEL_DENO=false` turns the relaunch off; so does a platform without `/proc` (tracing then stays off, with
 * a warning).
 *
 * @example
 * ```ts
 * import { relaunchWithTelemetry } from "./otel_launch.ts";
 * const code = await relaunchWithTelemetry();
 * if (code !== undefined) Deno.exit(code);
 * ```
 * @module
 */

/** Set in the relaunched child: its stdin is the launcher's lifeline pipe. */
export const RELAUNCHED_ENV = "CAIRN_OTEL_RELAUNCHED";

/** The variables that ask for OpenTelemetry export. */
const REQUESTING = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME"];

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: nothing to do
  }
}

/** Whether the environment asks for telemetry that this process did not start with. */
export function wantsRelaunch(get: (name: string) => string | undefined = env): boolean {
  if (get("OTEL_DENO") !== undefined || get(RELAUNCHED_ENV) !== undefined) return false;
  return REQUESTING.some((n) => (get(n) ?? "") !== "");
}

/**
 * This process's command line from `/proc/<pid>/cmdline`, or undefined when it cannot be read. Deno allows
 * reading `/proc/self` only with `--allow-all`; with `--allow-run` (which the relaunch needs anyway) `cat`
 * reads it.
 */
async function ownCommandLine(): Promise<string[] | undefined> {
  let raw: string | undefined;
  try {
    if (!granted({ name: "read", path: "/proc/self/cmdline" })) throw new Error("no read permission");
    raw = await Deno.readTextFile("/proc/self/cmdline");
  } catch {
    try {
      // Queried first: a missing permission must not turn into an interactive prompt.
      if (!granted({ name: "run", command: "cat" })) return undefined;
      const out = await new Deno.Command("cat", {
        args: [`/proc/${Deno.pid}/cmdline`],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).output();
      if (out.success) raw = new TextDecoder().decode(out.stdout);
    } catch { /* no permission or no cat */ }
  }
  if (raw === undefined) return undefined;
  const argv = raw.split("\0");
  if (argv.at(-1) === "") argv.pop();
  return argv.length > 1 ? argv : undefined;
}

function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Runs this command again with `OTEL_DENO=true` when {@linkcode wantsRelaunch}; resolves with the child's exit
 * code (128 + signal number when a signal ended it), or undefined when this process should go on itself.
 */
export async function relaunchWithTelemetry(
  log: (line: string) => void = (l) => console.error(l),
): Promise<number | undefined> {
  if (!wantsRelaunch()) return undefined;
  const argv = await ownCommandLine();
  if (argv === undefined) {
    log(
      "cairn: OTEL_* is set but the command line cannot be read to restart with OTEL_DENO=true; " +
        "start cairn with OTEL_DENO=true to export traces",
    );
    return undefined;
  }
  if (!granted({ name: "run", command: Deno.execPath() })) {
    log(
      "cairn: OTEL_* is set but --allow-run does not cover deno itself; " +
        "start cairn with OTEL_DENO=true to export traces",
    );
    return undefined;
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(Deno.execPath(), {
      args: argv.slice(1),
      env: { OTEL_DENO: "true", [RELAUNCHED_ENV]: "1" },
      // Its own process group: a terminal's Ctrl-C (sent to the whole foreground group) reaches the child
      // once, forwarded, not twice (a second SIGINT means "exit now").
      detached: true,
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (err) {
    log(
      `cairn: cannot restart with OTEL_DENO=true (${err instanceof Error ? err.message : err}); ` +
        "start cairn with OTEL_DENO=true to export traces",
    );
    return undefined;
  }
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  const forwarders = signals.map((signal) => {
    const forward = () => {
      try {
        child.kill(signal);
      } catch { /* gone */ }
    };
    Deno.addSignalListener(signal, forward);
    return () => Deno.removeSignalListener(signal, forward);
  });
  const status = await child.status;
  for (const remove of forwarders) remove();
  await child.stdin.close().catch(() => {});
  if (status.signal !== null) return 128 + signalNumber(status.signal);
  return status.code;
}

function signalNumber(signal: Deno.Signal): number {
  const n: Partial<Record<Deno.Signal, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return n[signal] ?? 1;
}

/**
 * In a relaunched child: calls `onLauncherGone` once the launcher's lifeline (stdin) ends, i.e. the launcher
 * died. Does nothing in a process that was not relaunched.
 */
export function watchLauncher(onLauncherGone: () => void): void {
  if (env(RELAUNCHED_ENV) === undefined) return;
  (async () => {
    try {
      for await (const _ of Deno.stdin.readable) { /* never written */ }
    } catch { /* closed */ }
    onLauncherGone();
  })();
}
