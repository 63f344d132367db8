/**
 * Unit tests of output collection against a hostile action's directory: symlinks anywhere in an output
 * path are never followed (the host file's digest never reaches the blobs or the store), FIFOs cannot
 * block the worker, a file swapped after the scan is refused, and `max_output_bytes` is checked on apparent
 * sizes before anything is read.
 *
 * @example
 * ```sh
 * deno test --allow-all src/worker/collect_outputs_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { CommandSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import { CairnError, Code } from "../util/error.ts";
import { collectOutputs, planOutputs, uploadBlobs } from "./collect_outputs.ts";
import { openVerified, readSmallFileNoFollow } from "./safe_fs.ts";

const SECRET = "host secret that must never be collected\n";
const SECRET_HASH = createHash("sha256").update(SECRET).digest("hex");

/** An action directory (`root`) beside a host directory holding a secret file, both fresh. */
async function setup(): Promise<{ dir: string; root: string; host: string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "cairn_collect_" });
  const root = `${dir}/action/root`;
  const host = `${dir}/host`;
  await Deno.mkdir(root, { recursive: true });
  await Deno.mkdir(`${host}/etc/ssh`, { recursive: true });
  await Deno.writeTextFile(`${host}/shadow`, SECRET);
  await Deno.writeTextFile(`${host}/etc/ssh/key`, SECRET);
  return { dir, root, host, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

function plan(outputPaths: string[], extra: { workingDirectory?: string } = {}) {
  return planOutputs(create(CommandSchema, { arguments: ["x"], outputPaths, ...extra }));
}

function legacyPlan(outputFiles: string[], outputDirectories: string[]) {
  return planOutputs(create(CommandSchema, { arguments: ["x"], outputFiles, outputDirectories }));
}

function hashes(blobs: readonly { digest: { hash: string } }[]): string[] {
  return blobs.map((b) => b.digest.hash);
}

async function mkfifo(path: string): Promise<void> {
  const out = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(out.success, "mkfifo failed");
}

Deno.test("collectOutputs: a symlinked parent directory is not followed; the output counts as missing", async () => {
  const { root, host, cleanup } = await setup();
  try {
    await Deno.symlink(host, `${root}/d`);
    const warnings: string[] = [];
    const out = await collectOutputs(root, plan(["d/shadow"]), { warn: (m) => warnings.push(m) });
    assert.equal(out.outputFiles.length, 0);
    assert.equal(out.outputSymlinks.length, 0);
    assert.ok(!hashes(out.blobs).includes(SECRET_HASH));
    assert.match(warnings.join("\n"), /d is a symlink \(not followed\)/);
  } finally {
    await cleanup();
  }
});

Deno.test("collectOutputs: `e -> /`-style symlink with output directory e/etc/ssh collects nothing", async () => {
  const { root, host, cleanup } = await setup();
  try {
    await Deno.symlink(host, `${root}/e`);
    const out = await collectOutputs(root, legacyPlan([], ["e/etc/ssh"]));
    assert.equal(out.outputDirectories.length, 0);
    assert.equal(out.blobs.length, 0);
  } finally {
    await cleanup();
  }
});

Deno.test("collectOutputs: the output itself as a symlink is reported as a symlink, never read through", async () => {
  const { root, host, cleanup } = await setup();
  try {
    await Deno.symlink(`${host}/shadow`, `${root}/f`);
    await Deno.symlink(`${host}/etc`, `${root}/dirlink`);
    const modern = await collectOutputs(root, plan(["f", "dirlink"]));
    assert.deepEqual(
      modern.outputSymlinks.map((s) => [s.path, s.target]),
      [["f", `${host}/shadow`], ["dirlink", `${host}/etc`]],
    );
    assert.equal(modern.blobs.length, 0);
    const legacy = await collectOutputs(root, legacyPlan(["f"], ["dirlink"]));
    assert.deepEqual(legacy.outputFileSymlinks.map((s) => s.path), ["f"]);
    assert.deepEqual(legacy.outputDirectorySymlinks.map((s) => s.path), ["dirlink"]);
    assert.equal(legacy.blobs.length, 0);
  } finally {
    await cleanup();
  }
});

Deno.test("collectOutputs: symlinks inside an output directory become SymlinkNodes, never followed", async () => {
  const { root, host, cleanup } = await setup();
  try {
    await Deno.mkdir(`${root}/out/sub`, { recursive: true });
    await Deno.writeTextFile(`${root}/out/ok.txt`, "fine\n");
    await Deno.symlink("/", `${root}/out/sub/rootlink`);
    await Deno.symlink(`${host}/shadow`, `${root}/out/secret`);
    const out = await collectOutputs(root, plan(["out"]));
    assert.equal(out.outputDirectories.length, 1);
    assert.ok(!hashes(out.blobs).includes(SECRET_HASH));
    // ok.txt, one Tree; nothing of the host.
    const fileBlobs = out.blobs.filter((b) => "path" in b);
    assert.deepEqual(fileBlobs.map((b) => "path" in b && b.path), [`${root}/out/ok.txt`]);
  } finally {
    await cleanup();
  }
});

Deno.test("collectOutputs: a symlinked working directory or input root is not followed", async () => {
  const { dir, root, host, cleanup } = await setup();
  try {
    await Deno.symlink(host, `${root}/wd`);
    const out = await collectOutputs(root, plan(["shadow"], { workingDirectory: "wd" }));
    assert.equal(out.outputFiles.length, 0);
    // The whole root swapped for a symlink.
    await Deno.remove(root, { recursive: true });
    await Deno.symlink(host, root);
    const again = await collectOutputs(root, plan(["shadow"]));
    assert.equal(again.outputFiles.length, 0);
    assert.equal(again.blobs.length, 0);
    assert.ok(dir);
  } finally {
    await cleanup();
  }
});

Deno.test("collectOutputs: a FIFO output fails fast with FAILED_PRECONDITION; in a tree it is skipped", async () => {
  const { root, cleanup } = await setup();
  try {
    await mkfifo(`${root}/pipe`);
    await Deno.mkdir(`${root}/out`);
    await mkfifo(`${root}/out/pipe`);
    await Deno.writeTextFile(`${root}/out/a.txt`, "a");
    await assert.rejects(
      collectOutputs(root, plan(["pipe"])),
      (e: unknown) => e instanceof CairnError && e.code === Code.FailedPrecondition && /FIFO/.test(e.message),
    );
    const warnings: string[] = [];
    const out = await collectOutputs(root, plan(["out"]), { warn: (m) => warnings.push(m) });
    assert.equal(out.outputDirectories.length, 1);
    assert.match(warnings.join("\n"), /out\/pipe skipped/);
  } finally {
    await cleanup();
  }
});

Deno.test("collectOutputs: a sparse 1 GiB file over max_output_bytes is RESOURCE_EXHAUSTED before any read", async () => {
  const { root, cleanup } = await setup();
  try {
    const f = await Deno.open(`${root}/big`, { write: true, create: true });
    await f.truncate(1024 * 1024 * 1024);
    f.close();
    const started = performance.now();
    await assert.rejects(
      collectOutputs(root, plan(["big"]), { maxOutputBytes: 100 * 1024 * 1024 }),
      (e: unknown) =>
        e instanceof CairnError && e.code === Code.ResourceExhausted &&
        e.message === "Output big is 1073741824 bytes, above limits.max_output_bytes 104857600",
    );
    // Not hashed: 1 GiB of SHA-256 takes far longer than an lstat.
    assert.ok(performance.now() - started < 500, `took ${performance.now() - started} ms`);
    // Many small files add up too.
    await Deno.mkdir(`${root}/many`);
    for (let i = 0; i < 5; i++) await Deno.writeTextFile(`${root}/many/${i}`, "x".repeat(300));
    await assert.rejects(
      collectOutputs(root, plan(["many"]), { maxOutputBytes: 1000 }),
      (e: unknown) =>
        e instanceof CairnError && e.code === Code.ResourceExhausted &&
        /Outputs total at least 1200 bytes \(at many\/3\), above limits.max_output_bytes 1000/.test(
          e.message,
        ),
    );
    const ok = await collectOutputs(root, plan(["many"]), { maxOutputBytes: 1500 });
    assert.equal(ok.outputDirectories.length, 1);
  } finally {
    await cleanup();
  }
});

Deno.test("uploadBlobs: a file swapped for a symlink after collection is refused, the host file never stored", async () => {
  const { root, host, cleanup } = await setup();
  try {
    await Deno.writeTextFile(`${root}/out.txt`, SECRET.toUpperCase());
    const out = await collectOutputs(root, plan(["out.txt"]));
    assert.equal(out.outputFiles.length, 1);
    await Deno.remove(`${root}/out.txt`);
    await Deno.symlink(`${host}/shadow`, `${root}/out.txt`);
    const store = createMemoryStore();
    await assert.rejects(
      uploadBlobs(store, out.blobs),
      (e: unknown) => e instanceof CairnError && e.code === Code.FailedPrecondition,
    );
    const [has] = await store.hasMany([{ hash: SECRET_HASH, size: SECRET.length }]);
    assert.equal(has, undefined);
  } finally {
    await cleanup();
  }
});

Deno.test("openVerified: refuses symlinks, FIFOs without blocking, and another inode at the same path", async () => {
  const { root, host, cleanup } = await setup();
  try {
    await Deno.writeTextFile(`${root}/a`, "aaaa");
    const info = await Deno.lstat(`${root}/a`);
    const id = { dev: info.dev ?? 0, ino: info.ino ?? 0, size: info.size };
    const h = await openVerified(`${root}/a`, id);
    await h.close();
    await Deno.writeTextFile(`${root}/b`, "bbbb"); // same size, another inode (made while a still exists)
    await Deno.rename(`${root}/b`, `${root}/a`);
    await assert.rejects(openVerified(`${root}/a`, id), /changed while being collected/);
    await Deno.remove(`${root}/a`);
    await Deno.symlink(`${host}/shadow`, `${root}/a`);
    await assert.rejects(openVerified(`${root}/a`, id), /ELOOP|changed while being collected/);
    await Deno.remove(`${root}/a`);
    await mkfifo(`${root}/a`);
    await assert.rejects(openVerified(`${root}/a`, id), /not a regular file/);
    // The side-channel reader: a FIFO or symlink reads as absent, a regular file as its text.
    assert.equal(await readSmallFileNoFollow(`${root}/a`, 1024), undefined);
    await Deno.symlink(`${host}/shadow`, `${root}/link`);
    assert.equal(await readSmallFileNoFollow(`${root}/link`, 1024), undefined);
    await Deno.writeTextFile(`${root}/side.json`, '{"failure":"timeout"}');
    assert.equal(await readSmallFileNoFollow(`${root}/side.json`, 1024), '{"failure":"timeout"}');
  } finally {
    await cleanup();
  }
});

Deno.test("collectOutputs: regular outputs are still collected, executable bits kept", async () => {
  const { root, cleanup } = await setup();
  try {
    await Deno.mkdir(`${root}/out/sub`, { recursive: true });
    await Deno.writeTextFile(`${root}/out/sub/b.txt`, "b\n");
    await Deno.writeTextFile(`${root}/tool`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.chmod(`${root}/tool`, 0o755);
    const out = await collectOutputs(root, plan(["tool", "out"]));
    assert.deepEqual(out.outputFiles.map((f) => [f.path, f.isExecutable]), [["tool", true]]);
    assert.deepEqual(out.outputDirectories.map((d) => d.path), ["out"]);
    const store = createMemoryStore();
    assert.equal(await uploadBlobs(store, out.blobs), 3); // tool, b.txt, the Tree
    // A file of several read chunks streams whole through the verified descriptor.
    const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => i % 251);
    await Deno.writeFile(`${root}/big.bin`, big);
    const bigOut = await collectOutputs(root, plan(["big.bin"]));
    const digest = bigOut.outputFiles[0]!.digest!;
    assert.equal(digest.hash, createHash("sha256").update(big).digest("hex"));
    assert.equal(await uploadBlobs(store, bigOut.blobs), 1);
    const [size] = await store.hasMany([{ hash: digest.hash, size: big.length }]);
    assert.equal(size, big.length);
  } finally {
    await cleanup();
  }
});
