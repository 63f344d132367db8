/**
 * Runs `h2_attacker.ts` as a process of its own (so a victim's latency is the server's, not the test's) and
 * follows what it prints.
 *
 * @example
 * ```ts ignore
 * import { runAttacker } from "./attacker_process.ts";
 * const attack = runAttacker(["rapid-reset", "50051", "4", "2500"]);
 * await attack.started; // the flood is under way
 * console.log(await attack.done); // "started\nsent 10000 cut 4\n"
 * ```
 * @module
 */

const ATTACKER = new URL("./h2_attacker.ts", import.meta.url).pathname;

/** Runs the attacker with `args`; `started` resolves once it printed so (or exited), `done` with all it printed. */
export function runAttacker(args: readonly string[]): { started: Promise<void>; done: Promise<string> } {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", ATTACKER, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let markStarted!: () => void;
  const started = new Promise<void>((r) => markStarted = r);
  const done = (async () => {
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes("started")) markStarted();
    }
    markStarted();
    await child.status;
    return text;
  })();
  return { started, done };
}
