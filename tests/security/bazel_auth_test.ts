/**
 * Real Bazel 4.2.3 against a `main.ts` that requires client credentials: with
 * `--remote_header=Authorization=Bearer TOKEN` the cache works over gRPC and over Bazel's HTTP cache
 * protocol (cold build uploads, rebuild after clean is all hits); without a credential Bazel stops at
 * GetCapabilities (UNAUTHENTICATED); a read-only token gets the hits but uploads nothing.
 *
 * Run: deno test --allow-all tests/security/bazel_auth_test.ts
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  bazelAvailable,
  bazelClean,
  type BazelResult,
  type BazelWorkspace,
  outputsDigest,
  prepareWorkspace,
  runBazel,
  WORKSPACE_BUILD_SPAWNS,
} from "../bazel_harness.ts";
import { startCairnProcess } from "../fixtures/cairn_process.ts";

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

function summary(r: BazelResult, what: string) {
  assert.equal(r.code, 0, `${what} exited ${r.code}\n--- stderr\n${r.stderr}`);
  assert.ok(r.processes, `${what}: no process summary\n${r.stderr}`);
  return r.processes;
}

Deno.test("Bazel 4.2.3 with --remote_header=Authorization=Bearer against a cache that requires tokens", async (t) => {
  assert.ok(await bazelAvailable(), "`bazel` is not on PATH (Debian package bazel-bootstrap)");
  const ci = `ci-${crypto.randomUUID()}`;
  const reader = `reader-${crypto.randomUUID()}`;
  const cairn = await startCairnProcess({
    config: {
      stores: [
        { name: "CAS", verify: { verify_size: true, verify_hash: true, backend: { memory: {} } } },
        { name: "AC", memory: {} },
      ],
      servers: [{
        listener: { http: { socket_address: "127.0.0.1:0" } },
        services: {
          cas: [{ cas_store: "CAS" }],
          ac: [{ ac_store: "AC" }],
          bytestream: [{ cas_store: "CAS" }],
          capabilities: [],
        },
        auth: {
          anonymous: "none",
          users: [
            { name: "ci", token_sha256: sha256(ci), permissions: { "*": ["read", "write_cas", "write_ac"] } },
            { name: "reader", token_sha256: sha256(reader), permissions: { "*": ["read"] } },
            { name: "dev", password_sha256: sha256("dev-pass"), permissions: { "*": ["read"] } },
          ],
        },
      }],
    },
  });
  const ws: BazelWorkspace = await prepareWorkspace({ maxIdleSecs: 60 });
  const build = (flags: string[]) => runBazel(ws, ["build", "//..."], { flags });
  const header = (token: string) => `--remote_header=Authorization=Bearer ${token}`;
  try {
    let local = new Map<string, string>();
    await t.step("no credential: Bazel stops at GetCapabilities with UNAUTHENTICATED", async () => {
      const r = await build([`--remote_cache=${cairn.url}`]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Failed to query remote execution capabilities: UNAUTHENTICATED/);
    });

    await t.step("grpc:// with the bearer header: cold build uploads, rebuild is all hits", async () => {
      await bazelClean(ws);
      const cold = summary(await build([`--remote_cache=${cairn.url}`, header(ci)]), "cold");
      assert.equal(cold.remoteCacheHit, 0, cold.line);
      local = await outputsDigest(ws);
      await bazelClean(ws);
      const warm = summary(await build([`--remote_cache=${cairn.url}`, header(ci)]), "warm");
      assert.equal(warm.remoteCacheHit, WORKSPACE_BUILD_SPAWNS, warm.line);
      assert.deepEqual(await outputsDigest(ws), local);
    });

    await t.step("a read-only token gets the hits", async () => {
      await bazelClean(ws);
      const r = await build([`--remote_cache=${cairn.url}`, header(reader)]);
      const p = summary(r, "reader build");
      assert.equal(p.remoteCacheHit, WORKSPACE_BUILD_SPAWNS, p.line);
    });

    await t.step(
      "http:// (Bazel's HTTP cache) with the bearer header; a read-only token uploads nothing",
      async () => {
        await bazelClean(ws);
        const ro = await build([`--remote_cache=${cairn.httpUrl}`, header(reader)]);
        assert.equal(summary(ro, "http reader").remoteCacheHit, 0);
        await bazelClean(ws);
        const cold = summary(await build([`--remote_cache=${cairn.httpUrl}`, header(ci)]), "http cold");
        assert.equal(cold.remoteCacheHit, 0, cold.line); // the reader's build stored nothing
        await bazelClean(ws);
        const warm = summary(await build([`--remote_cache=${cairn.httpUrl}`, header(ci)]), "http warm");
        assert.equal(warm.remoteCacheHit, WORKSPACE_BUILD_SPAWNS, warm.line);
        assert.deepEqual(await outputsDigest(ws), local);
      },
    );

    await t.step(
      "Basic credentials: http://name:password@host and Authorization=Basic over grpc://",
      async () => {
        await bazelClean(ws);
        const http = await build([`--remote_cache=${cairn.httpUrl.replace("://", "://dev:dev-pass@")}`]);
        assert.equal(summary(http, "http basic").remoteCacheHit, WORKSPACE_BUILD_SPAWNS);
        await bazelClean(ws);
        const grpcBasic = await build([
          `--remote_cache=${cairn.url}`,
          `--remote_header=Authorization=Basic ${btoa("dev:dev-pass")}`,
        ]);
        assert.equal(summary(grpcBasic, "grpc basic").remoteCacheHit, WORKSPACE_BUILD_SPAWNS);
        await bazelClean(ws);
        const wrong = await build([`--remote_cache=${cairn.httpUrl.replace("://", "://dev:guess@")}`]);
        assert.equal(summary(wrong, "http wrong password").remoteCacheHit, 0);
      },
    );
  } finally {
    try {
      await ws.cleanup();
    } finally {
      await cairn.stop();
    }
  }
});
