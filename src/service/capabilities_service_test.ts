import assert from "node:assert/strict";
import {
  Capabilities,
  Compressor_Value,
  DigestFunction_Value,
  SymlinkAbsolutePathStrategy_Value,
} from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { Code } from "../util/error.ts";
import { createCapabilitiesService } from "./capabilities_service.ts";
import { rejectsWithCode, serviceClient } from "../../tests/fixtures/service_testing.ts";

Deno.test("GetCapabilities is truthful per instance and NOT_FOUND for unknown instances", async () => {
  const client = serviceClient(
    Capabilities,
    createCapabilitiesService({
      instances: new Map([
        ["", { updateEnabled: true, execution: false }],
        ["main", { updateEnabled: false, execution: true }],
      ]),
      maxBatchTotalSizeBytes: 8 << 20,
    }),
  );
  const cache = await client.getCapabilities({ instanceName: "" });
  const c = cache.cacheCapabilities!;
  assert.deepEqual(c.digestFunctions, [DigestFunction_Value.SHA256]);
  assert.equal(c.actionCacheUpdateCapabilities?.updateEnabled, true);
  assert.equal(c.maxBatchTotalSizeBytes, BigInt(8 << 20));
  assert.equal(c.symlinkAbsolutePathStrategy, SymlinkAbsolutePathStrategy_Value.ALLOWED);
  assert.deepEqual(c.supportedCompressors, [Compressor_Value.ZSTD]);
  assert.deepEqual(c.supportedBatchUpdateCompressors, [Compressor_Value.ZSTD]);
  assert.equal(cache.executionCapabilities, undefined);
  assert.deepEqual([cache.lowApiVersion?.major, cache.lowApiVersion?.minor], [2, 0]);
  assert.deepEqual([cache.highApiVersion?.major, cache.highApiVersion?.minor], [2, 3]);

  const exec = await client.getCapabilities({ instanceName: "main" });
  assert.equal(exec.cacheCapabilities?.actionCacheUpdateCapabilities?.updateEnabled, false);
  assert.equal(exec.executionCapabilities?.execEnabled, true);
  assert.equal(exec.executionCapabilities?.digestFunction, DigestFunction_Value.SHA256);
  assert.ok((exec.executionCapabilities?.executionPriorityCapabilities?.priorities.length ?? 0) > 0);

  const msg = await rejectsWithCode(client.getCapabilities({ instanceName: "other" }), Code.NotFound);
  assert.match(msg, /"", "main"/);
});
