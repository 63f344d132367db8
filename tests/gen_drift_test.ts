// Guards the generated protobuf code in src/gen/:
//  1. Regenerating from proto/ with buf.gen.yaml yields byte-identical files
//     (fails when someone edits a .proto without running `deno task gen`).
//  2. A few wire-level facts match the upstream REAPI / googleapis definitions.
//
// Run: deno test --allow-read --allow-write --allow-run --allow-env tests/gen_drift_test.ts
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import type { DescMessage } from "@bufbuild/protobuf";
import {
  ActionCache,
  ActionResultSchema,
  BatchReadBlobsResponse_ResponseSchema,
  BatchUpdateBlobsRequest_RequestSchema,
  CacheCapabilitiesSchema,
  Capabilities,
  CommandSchema,
  Compressor_Value,
  ContentAddressableStorage,
  DigestFunction_Value,
  DigestSchema,
  ExecuteOperationMetadataSchema,
  ExecuteRequestSchema,
  ExecuteResponseSchema,
  Execution,
  ExecutionStage_Value,
  FindMissingBlobsRequestSchema,
  FindMissingBlobsResponseSchema,
  GetActionResultRequestSchema,
  OutputDirectorySchema,
  OutputFileSchema,
  RequestMetadataSchema,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import {
  ByteStream,
  ReadResponseSchema,
  WriteRequestSchema,
} from "../src/gen/google/bytestream/bytestream_pb.ts";
import { OperationSchema } from "../src/gen/google/longrunning/operations_pb.ts";
import { PreconditionFailure_ViolationSchema } from "../src/gen/google/rpc/error_details_pb.ts";
import { Code } from "../src/gen/google/rpc/code_pb.ts";
import { Health } from "../src/gen/grpc/health/v1/health_pb.ts";
import { Fetch, Push } from "../src/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts";
import { WorkerApi } from "../src/gen/cairn/worker/v1/worker_api_pb.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const GEN_DIR = `${ROOT}src/gen`;

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await listFiles(`${dir}/${e.name}`, rel));
    else out.push(rel);
  }
  return out.sort();
}

Deno.test("src/gen is up to date with proto/ (run `deno task gen` if this fails)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "cairn-gen-drift-" });
  try {
    // Use the committed buf.gen.yaml, only redirecting its output directory.
    const template = await Deno.readTextFile(`${ROOT}buf.gen.yaml`);
    const outLine = /^(\s*)out:\s*src\/gen\s*$/m;
    assert.match(template, outLine, "buf.gen.yaml must contain `out: src/gen`");
    const outDir = `${tmp}/out`;
    const tmpTemplate = `${tmp}/buf.gen.yaml`;
    await Deno.writeTextFile(tmpTemplate, template.replace(outLine, `$1out: ${JSON.stringify(outDir)}`));

    const res = await new Deno.Command(`${ROOT}node_modules/.bin/buf`, {
      args: ["generate", "--template", tmpTemplate],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(res.code, 0, `buf generate failed:\n${new TextDecoder().decode(res.stderr)}`);

    const want = await listFiles(outDir);
    const have = await listFiles(GEN_DIR);
    assert.ok(want.length > 0, "buf generated nothing");
    assert.deepEqual(have, want, "set of files in src/gen differs from a fresh generation");
    for (const f of want) {
      const a = await Deno.readFile(`${outDir}/${f}`);
      const b = await Deno.readFile(`${GEN_DIR}/${f}`);
      assert.ok(
        a.length === b.length && a.every((x, i) => x === b[i]),
        `src/gen/${f} is stale; run \`deno task gen\``,
      );
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("Digest wire encoding matches REAPI", () => {
  const bytes = toBinary(DigestSchema, create(DigestSchema, { hash: "ab", sizeBytes: 3n }));
  // field 1 (len-delimited): 0x0a, len 2, "ab"; field 2 (varint): 0x10, 3
  assert.deepEqual([...bytes], [0x0a, 0x02, 0x61, 0x62, 0x10, 0x03]);
});

function num(schema: DescMessage, field: string): number | undefined {
  return schema.fields.find((f) => f.name === field)?.number;
}

Deno.test("key field numbers match upstream", () => {
  const cases: [DescMessage, string, number][] = [
    [DigestSchema, "hash", 1],
    [DigestSchema, "size_bytes", 2],
    [ActionResultSchema, "output_files", 2],
    [ActionResultSchema, "output_directories", 3],
    [ActionResultSchema, "exit_code", 4],
    [ActionResultSchema, "stdout_digest", 6],
    [ActionResultSchema, "stderr_digest", 8],
    [ActionResultSchema, "execution_metadata", 9],
    [ActionResultSchema, "output_file_symlinks", 10],
    [ActionResultSchema, "output_directory_symlinks", 11],
    [ActionResultSchema, "output_symlinks", 12],
    [CommandSchema, "output_paths", 7],
    [CommandSchema, "output_node_properties", 8],
    [CommandSchema, "output_directory_format", 9],
    [ExecuteRequestSchema, "skip_cache_lookup", 3],
    [ExecuteRequestSchema, "action_digest", 6],
    [ExecuteRequestSchema, "digest_function", 9],
    [ExecuteResponseSchema, "status", 3],
    [ExecuteOperationMetadataSchema, "partial_execution_metadata", 5],
    [GetActionResultRequestSchema, "digest_function", 6],
    [FindMissingBlobsRequestSchema, "digest_function", 3],
    [FindMissingBlobsResponseSchema, "missing_blob_digests", 2],
    [BatchUpdateBlobsRequest_RequestSchema, "compressor", 3],
    [BatchReadBlobsResponse_ResponseSchema, "compressor", 4],
    [BatchReadBlobsResponse_ResponseSchema, "status", 3],
    [CacheCapabilitiesSchema, "max_cas_blob_size_bytes", 8],
    [CacheCapabilitiesSchema, "supported_batch_update_compressors", 7],
    [OutputFileSchema, "node_properties", 7],
    [OutputDirectorySchema, "tree_digest", 3],
    [OutputDirectorySchema, "root_directory_digest", 5],
    [RequestMetadataSchema, "configuration_id", 7],
    [ReadResponseSchema, "data", 10],
    [WriteRequestSchema, "data", 10],
    [WriteRequestSchema, "finish_write", 3],
    [OperationSchema, "error", 4],
    [OperationSchema, "response", 5],
    [PreconditionFailure_ViolationSchema, "subject", 2],
  ];
  for (const [schema, field, want] of cases) {
    assert.equal(num(schema, field), want, `${schema.typeName}.${field}`);
  }
  assert.equal(ActionResultSchema.typeName, "build.bazel.remote.execution.v2.ActionResult");
  assert.equal(
    ActionResultSchema.fields.some((f) => f.number === 1),
    false,
    "ActionResult field 1 is reserved",
  );
});

Deno.test("enum values match upstream", () => {
  assert.equal(DigestFunction_Value.SHA256, 1);
  assert.equal(DigestFunction_Value.SHA256TREE, 8);
  assert.equal(DigestFunction_Value.BLAKE3, 9);
  assert.equal(Compressor_Value.ZSTD, 1);
  assert.equal(Compressor_Value.DEFLATE, 2);
  assert.equal(ExecutionStage_Value.COMPLETED, 4);
  assert.equal(Code.UNAUTHENTICATED, 16);
  assert.equal(Code.FAILED_PRECONDITION, 9);
});

Deno.test("service names and streaming kinds match upstream", () => {
  assert.equal(Execution.typeName, "build.bazel.remote.execution.v2.Execution");
  assert.equal(Execution.method.execute.methodKind, "server_streaming");
  assert.equal(Execution.method.waitExecution.methodKind, "server_streaming");
  assert.equal(ActionCache.method.getActionResult.methodKind, "unary");
  assert.equal(ContentAddressableStorage.method.getTree.methodKind, "server_streaming");
  assert.equal(ContentAddressableStorage.method.findMissingBlobs.name, "FindMissingBlobs");
  assert.equal(Capabilities.method.getCapabilities.methodKind, "unary");
  assert.equal(ByteStream.typeName, "google.bytestream.ByteStream");
  assert.equal(ByteStream.method.read.methodKind, "server_streaming");
  assert.equal(ByteStream.method.write.methodKind, "client_streaming");
  assert.equal(ByteStream.method.queryWriteStatus.methodKind, "unary");
  assert.equal(Health.typeName, "grpc.health.v1.Health");
  assert.equal(Health.method.watch.methodKind, "server_streaming");
  assert.equal(Fetch.typeName, "build.bazel.remote.asset.v1.Fetch");
  assert.equal(Push.typeName, "build.bazel.remote.asset.v1.Push");
  assert.equal(WorkerApi.method.connect.methodKind, "bidi_streaming");
});
