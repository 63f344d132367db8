/**
 * Tests of the `local` worker's `limits`: parsed from the config (sizes as numbers or `"16mib"`, unknown
 * fields refused with their path) and resolved with their defaults.
 *
 * @example
 * ```sh
 * deno test --allow-all src/worker/local_worker_spec_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { parseConfig } from "../config/mod.ts";
import {
  DEFAULT_MAX_FILE_SIZE_BYTES,
  DEFAULT_MAX_OUTPUT_BYTES,
  DEFAULT_MAX_PROCESSES,
  defaultMaxMemoryBytes,
  type LocalWorkerSpec,
  resolveLocalWorkerSpec,
} from "./local_worker_spec.ts";
import { PRLIMIT, prlimitArgs } from "./sandbox.ts";

function configWith(limits: unknown): string {
  return JSON.stringify({
    stores: [{
      name: "W",
      fast_slow: {
        fast: { filesystem: { content_path: "/tmp/x/c", temp_path: "/tmp/x/t" } },
        slow: { memory: {} },
      },
    }],
    workers: [{
      local: {
        worker_api_endpoint: { uri: "grpc://127.0.0.1:50061" },
        cas_fast_slow_store: "W",
        work_directory: "/tmp/x/work",
        ...(limits === undefined ? {} : { limits }),
      },
    }],
    servers: [],
  });
}

function specOf(text: string): LocalWorkerSpec {
  return parseConfig(text, "w.json5").workers[0]!.local as LocalWorkerSpec;
}

Deno.test("limits: defaults when absent (4096 processes, half of RAM, 8 GiB files, 16 GiB outputs)", () => {
  const limits = resolveLocalWorkerSpec(specOf(configWith(undefined))).limits;
  assert.deepEqual(limits, {
    maxProcesses: DEFAULT_MAX_PROCESSES,
    maxMemoryBytes: defaultMaxMemoryBytes(),
    maxFileSizeBytes: DEFAULT_MAX_FILE_SIZE_BYTES,
    maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES,
  });
  assert.equal(DEFAULT_MAX_PROCESSES, 4096);
  assert.equal(DEFAULT_MAX_FILE_SIZE_BYTES, 8 * 1024 ** 3);
  assert.equal(DEFAULT_MAX_OUTPUT_BYTES, 16 * 1024 ** 3);
  assert.equal(defaultMaxMemoryBytes(), Math.floor(Deno.systemMemoryInfo().total / 2));
});

Deno.test("limits: sizes as strings, 0 turns a limit off, prlimit arguments follow", () => {
  const limits = resolveLocalWorkerSpec(specOf(configWith({
    max_processes: 64,
    max_memory_bytes: "256mib",
    max_file_size_bytes: 0,
    max_output_bytes: "1gb",
  }))).limits;
  assert.deepEqual(limits, {
    maxProcesses: 64,
    maxMemoryBytes: 256 * 1024 * 1024,
    maxFileSizeBytes: 0,
    maxOutputBytes: 1_000_000_000,
  });
  assert.deepEqual(prlimitArgs(limits), [PRLIMIT, "--nproc=64", `--data=${256 * 1024 * 1024}`, "--"]);
  assert.deepEqual(prlimitArgs({ maxProcesses: 0, maxMemoryBytes: 0, maxFileSizeBytes: 0 }), []);
});

Deno.test("limits: an unknown field is refused with its path", () => {
  assert.throws(
    () => parseConfig(configWith({ max_process: 64 }), "w.json5"),
    /workers\[0\]\.local\.limits\.max_process: unknown field \(did you mean max_processes\?\)/,
  );
});
