/**
 * The soak's probe, run as a process of its own by `soak.ts` so that what it measures is the server's
 * latency, not the event loop of the process driving 64 client streams and the attack clients: every second
 * a GetCapabilities, then a ByteStream read of `RESOURCE`, each with a 1 s deadline, on a connection of its
 * own, for `SECONDS` seconds. Prints one line per probe: `ok CAPS_MS READ_MS` (both answered, in that many
 * milliseconds each) or `fail ISO-TIME MESSAGE` (one was not answered within its deadline).
 *
 * @example
 * ```sh
 * deno run --allow-net=127.0.0.1 tests/security/soak_probe.ts grpc://127.0.0.1:50051 blobs/<hash>/4096 60
 * ```
 * @module
 */
import { type Client, createClient } from "@connectrpc/connect";
import { Capabilities } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { ByteStream } from "../../src/gen/google/bytestream/bytestream_pb.ts";
import { createGrpcClientTransport } from "../../src/transport/grpc_client.ts";

const [url, resource, secondsText] = Deno.args;
if (!url || !resource || !(Number(secondsText) > 0)) {
  throw new Error("usage: soak_probe.ts URL RESOURCE SECONDS");
}
const endAt = Date.now() + Number(secondsText) * 1000;
const transport = createGrpcClientTransport(url);
const bs: Client<typeof ByteStream> = createClient(ByteStream, transport);
const caps: Client<typeof Capabilities> = createClient(Capabilities, transport);
const out = Deno.stdout.writable.getWriter();
const say = (line: string) => out.write(new TextEncoder().encode(`${line}\n`));

while (Date.now() < endAt) {
  const t0 = performance.now();
  try {
    await caps.getCapabilities({}, { timeoutMs: 1000 });
    const t1 = performance.now();
    for await (const _ of bs.read({ resourceName: resource }, { timeoutMs: 1000 })) { /* drained */ }
    await say(`ok ${(t1 - t0).toFixed(1)} ${(performance.now() - t1).toFixed(1)}`);
  } catch (err) {
    await say(`fail ${new Date().toISOString()} ${String(err).replaceAll("\n", " ")}`);
  }
  const wait = 1000 - (performance.now() - t0);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
await out.close();
Deno.exit(0);
