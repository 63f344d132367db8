/**
 * Unary gRPC throughput: Cairn's gRPC path (Health/Check through createCairnServer) beside a bare
 * `node:http2` stream handler answering the same bytes (the ceiling), both driven by h2load with 64
 * concurrent streams (4 connections × 16), and the same gRPC path on the `Deno.serve` server path beside a bare
 * `Deno.serve` handler (its ceiling). Each server runs in its own process; runs alternate between
 * them (the machine is shared, so the median of several rounds is reported).
 *
 * @example
 * ```sh
 * deno run -A tests/bench/grpc_bench.ts [--duration 4] [--rounds 3]
 * ```
 * @module
 */
import { healthRequestFile, runH2load, spawnEchoServer } from "../fixtures/h2load.ts";

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}
const duration = arg("--duration", 4);
const rounds = arg("--rounds", 3);
const file = await healthRequestFile();
const bare = await spawnEchoServer(["--bare"]);
const cairn = await spawnEchoServer([]);
const cairnDeno = await spawnEchoServer(["--deno-serve"]);
const bareDeno = await spawnEchoServer(["--bare-deno"]);

async function run(port: number, label: string): Promise<number> {
  const r = await runH2load(port, ["-D", String(duration), "-c", "4", "-m", "16"], file);
  if (r.failed + r.errored > 0) {
    throw new Error(`${label}: ${r.failed} failed, ${r.errored} errored\n${r.output}`);
  }
  return r.reqPerSec;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  for (const s of [bare, cairn, bareDeno, cairnDeno]) {
    await runH2load(s.port, ["-n", "20000", "-c", "4", "-m", "16"], file); // warm-up
  }
  const results = {
    bare: [] as number[],
    cairn: [] as number[],
    deno: [] as number[],
    bareDeno: [] as number[],
  };
  for (let i = 0; i < rounds; i++) {
    results.bare.push(await run(bare.port, "bare"));
    results.cairn.push(await run(cairn.port, "cairn"));
    results.bareDeno.push(await run(bareDeno.port, "bare deno"));
    results.deno.push(await run(cairnDeno.port, "cairn deno_serve"));
  }
  const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(", ");
  console.log(`unary Health/Check, h2load -c 4 -m 16 -D ${duration}, ${rounds} alternating rounds`);
  console.log(
    `bare node:http2 handler (ceiling): ${median(results.bare).toFixed(0)} calls/s  [${fmt(results.bare)}]`,
  );
  console.log(
    `cairn gRPC path:                   ${median(results.cairn).toFixed(0)} calls/s  [${fmt(results.cairn)}]`,
  );
  console.log(
    `bare Deno.serve handler (ceiling): ${median(results.bareDeno).toFixed(0)} calls/s  [${
      fmt(results.bareDeno)
    }]`,
  );
  console.log(
    `cairn gRPC on Deno.serve:          ${median(results.deno).toFixed(0)} calls/s  [${fmt(results.deno)}]`,
  );
  console.log(
    `ratio deno_serve/bare node:http2: ${(median(results.deno) / median(results.bare) * 100).toFixed(1)}%, ` +
      `deno_serve/bare Deno.serve: ${(median(results.deno) / median(results.bareDeno) * 100).toFixed(1)}%`,
  );
  console.log(
    `ratio cairn/bare: ${(median(results.cairn) / median(results.bare) * 100).toFixed(1)}% (target >= 80%)`,
  );
} finally {
  await Promise.all([bare.stop(), cairn.stop(), cairnDeno.stop(), bareDeno.stop()]);
  await Deno.remove(file).catch(() => {});
}
