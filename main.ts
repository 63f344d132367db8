/**
 * Cairn's command line: `deno run main.ts --config FILE` (or a positional FILE, as NativeLink takes it).
 *
 * @example
 * ```sh
 * deno task start                                  # the all-in-one default, config/local.json5
 * deno run -A main.ts --check-config config/seed_003_cas.json5
 * ```
 * @module
 */
import { resolve } from "node:path";
import { checkConfigPaths, describeConfig, loadConfig } from "./src/config/mod.ts";
import { startCairn } from "./src/app.ts";
import { VERSION } from "./src/version.ts";
import { relaunchWithTelemetry, watchLauncher } from "./src/util/otel_launch.ts";

const HELP = `Cairn ${VERSION}: a remote build cache and remote execution service (REAPI v2).

Usage:
  cairn [--config] FILE          start every server, scheduler and worker FILE describes
  cairn --check-config FILE      validate FILE and print the resolved graph of stores, schedulers,
                                 workers and servers
  cairn --help | --version

FILE is JSON5 in NativeLink's config format; \${VAR} and \${VAR:-default} are expanded from the environment.
Relative paths in FILE are relative to the directory cairn is started in.
Stop with SIGINT or SIGTERM: listeners stop accepting, in-flight calls finish, stores flush.`;

interface Cli {
  readonly mode: "run" | "check" | "help" | "version";
  readonly file?: string;
}

/** Parses argv; throws a one-line error on misuse. */
export function parseArgs(args: readonly string[]): Cli {
  let mode: Cli["mode"] = "run";
  let file: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const takeValue = (flag: string): string => {
      const eq = a.indexOf("=");
      if (eq > 0) return a.slice(eq + 1);
      const v = args[++i];
      if (v === undefined) throw new Error(`${flag} needs a file`);
      return v;
    };
    if (a === "--help" || a === "-h") return { mode: "help" };
    if (a === "--version" || a === "-V") return { mode: "version" };
    if (a === "--config" || a.startsWith("--config=") || a === "-c") file = takeValue("--config");
    else if (a === "--check-config" || a.startsWith("--check-config=")) {
      mode = "check";
      file = takeValue("--check-config");
    } else if (a.startsWith("-")) throw new Error(`unknown option ${a} (see --help)`);
    else if (file === undefined) file = a;
    else throw new Error(`unexpected argument ${a}: only one config file is taken`);
  }
  if (file === undefined) throw new Error("no config file given (usage: cairn --config FILE; see --help)");
  return { mode, file };
}

async function main(args: readonly string[]): Promise<number> {
  const cli = parseArgs(args);
  if (cli.mode === "help") {
    console.log(HELP);
    return 0;
  }
  if (cli.mode === "version") {
    console.log(`cairn ${VERSION}`);
    return 0;
  }
  if (cli.mode === "run") {
    // OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_SERVICE_NAME without OTEL_DENO: run again with Deno's telemetry on.
    const relaunched = await relaunchWithTelemetry();
    if (relaunched !== undefined) return relaunched;
  }
  const config = await loadConfig(cli.file!);
  if (cli.mode === "check") {
    console.log(describeConfig(config));
    console.log(`${cli.file}: ok`);
    return 0;
  }
  // Every directory and file the config names is checked (and missing directories created) before any port
  // is bound or worker spawned: nothing starts half-configured.
  await checkConfigPaths(config);
  const app = await startCairn(config, { configPath: resolve(cli.file!) });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      console.error(`cairn: ${signal} again, exiting now`);
      Deno.exit(130);
    }
    stopping = true;
    console.error(`cairn: ${signal}: shutting down`);
    app.shutdown().then(() => Deno.exit(0), (err) => {
      console.error(`cairn: shutdown: ${err instanceof Error ? err.message : err}`);
      Deno.exit(1);
    });
  };
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  // Restarted with OTEL_DENO=true by a launcher (OTEL_* set): stop when the launcher dies.
  watchLauncher(() => stop("launcher gone"));
  await app.finished;
  return 0;
}

if (import.meta.main) {
  try {
    const code = await main(Deno.args);
    if (code !== 0) Deno.exit(code);
  } catch (err) {
    console.error(`cairn: ${err instanceof Error ? err.message : String(err)}`);
    Deno.exit(1);
  }
}
