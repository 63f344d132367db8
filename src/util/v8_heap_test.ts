/**
 * Tests of `v8_heap.ts`: the flag is on every command line that starts the server, and V8 takes it.
 *
 * @example
 * ```sh
 * deno test --allow-all src/util/v8_heap_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { V8_HEAP_FLAG } from "./v8_heap.ts";

const ROOT = new URL("../../", import.meta.url);

Deno.test("v8_heap: deno task start and the fixtures that run main.ts pass the flag", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks as Record<
    string,
    string
  >;
  assert.ok(tasks.start!.split(" ").includes(V8_HEAP_FLAG), `deno.json start task: ${tasks.start}`);
  for (const fixture of ["tests/fixtures/cairn_process.ts", "tests/fixtures/exec_fixtures.ts"]) {
    const text = await Deno.readTextFile(new URL(fixture, ROOT));
    assert.match(text, /^\s+V8_HEAP_FLAG,$/m, `${fixture} puts V8_HEAP_FLAG on the deno run command line`);
  }
});

Deno.test("v8_heap: deno run accepts the flag (V8 knows it)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "console.log('ran')"],
    env: { DENO_V8_FLAGS: V8_HEAP_FLAG.slice("--v8-flags=".length) },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, err);
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "ran");
  assert.doesNotMatch(err, /unrecognized|unknown|Error/i);
});
