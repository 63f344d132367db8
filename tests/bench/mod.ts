/**
 * `deno task bench`: runs every `*_bench.ts` beside this file, one after another, each in its own process
 * so one benchmark's heap and threads do not skew the next. Each prints its figures beside the machine's
 * ceiling measured in the same run. Pass names to run a subset: `deno task bench grpc store`.
 *
 * @example
 * ```sh
 * deno task bench            # everything
 * deno task bench grpc       # tests/bench/grpc_bench.ts only
 * ```
 * @module
 */
const dir = new URL(".", import.meta.url);
const only = Deno.args;
const files: string[] = [];
for await (const e of Deno.readDir(dir)) {
  if (!e.isFile || !e.name.endsWith("_bench.ts")) continue;
  if (only.length && !only.some((o) => e.name.startsWith(o))) continue;
  files.push(e.name);
}
files.sort();
let failed = 0;
for (const name of files) {
  console.log(`\n=== ${name} ===`);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL(name, dir).pathname],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const { code } = await child.status;
  if (code !== 0) {
    failed++;
    console.log(`=== ${name} exited with ${code} ===`);
  }
}
if (failed) Deno.exit(1);
