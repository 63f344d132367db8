// Real Bazel 4.2.3 against the real `main.ts` as its remote cache: a cold build uploads, `bazel clean`, and
// the rebuild is served entirely from the cache with byte-identical outputs — over grpc://, with an
// instance name, with --remote_download_minimal, over Bazel's HTTP cache protocol on the same port, and
// over TLS (https://localhost; see the note on grpcs below). `bazel test //...` passes with remote cache hits on its second run.
//
// One Bazel workspace/output base and one Cairn process (server 0 plain, server 1 TLS with its own stores)
// serve the whole file, so Bazel starts once.
//
// Run: deno test --allow-all tests/bazel_cache_test.ts
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { ContentAddressableStorage } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import { createGrpcClientTransport } from "../src/transport/grpc_client.ts";
import {
  assertAllRemoteHits as assertAllHits,
  assertBazelOk as ok,
  bazelAvailable,
  bazelClean,
  type BazelResult,
  type BazelWorkspace,
  EXPECTED_TEXT_OUTPUTS,
  MAIN_OUTPUTS,
  outputsDigest,
  prepareWorkspace,
  runBazel,
  WORKSPACE_BUILD_SPAWNS,
  WORKSPACE_TEST_SPAWNS,
} from "./bazel_harness.ts";
import { memoryCacheConfig, startCairnProcess } from "./fixtures/cairn_process.ts";
import { makeTestCerts } from "./fixtures/transport_fixtures.ts";

/** Every non-internal process ran locally (the cache was empty for these actions). */
function assertAllLocal(r: BazelResult, spawns: number, what: string): void {
  const p = r.processes!;
  assert.equal(p.remoteCacheHit, 0, `${what}: ${p.line}`);
  assert.equal(p.total - p.internal, spawns, `${what}: ${p.line}`);
}

Deno.test("Bazel 4.2.3 uses main.ts as its remote cache (grpc, instance, minimal, http, https, test)", async (t) => {
  assert.ok(await bazelAvailable(), "`bazel` is not on PATH (Debian package bazel-bootstrap)");
  const certs = await makeTestCerts();
  const config = memoryCacheConfig({ instances: ["", "main"] });
  (config.stores as unknown[]).push(
    { name: "CAS_TLS", verify: { verify_size: true, verify_hash: true, backend: { memory: {} } } },
    { name: "AC_TLS", memory: {} },
  );
  (config.servers as unknown[]).push({
    name: "tls",
    listener: {
      http: {
        socket_address: "127.0.0.1:0",
        tls: { cert_file: certs.serverCert, key_file: certs.serverKey },
      },
    },
    services: {
      cas: [{ instance_name: "", cas_store: "CAS_TLS" }],
      ac: [{ instance_name: "", ac_store: "AC_TLS" }],
      bytestream: [{ instance_name: "", cas_store: "CAS_TLS" }],
      capabilities: [{ instance_name: "" }],
    },
  });
  const cairn = await startCairnProcess({ config });
  const ws: BazelWorkspace = await prepareWorkspace({ maxIdleSecs: 60 });
  const grpcUrl = cairn.url;
  const tlsPort = cairn.servers[1]?.port;
  assert.ok(tlsPort, cairn.logs());
  const build = (flags: string[]) => runBazel(ws, ["build", "//..."], { flags });

  /** Cold build (all local, uploads), clean, warm build (all hits) with byte-identical outputs. */
  const coldThenWarm = async (flags: string[], what: string, expected?: Map<string, string>) => {
    await bazelClean(ws);
    const cold = ok(await build(flags), `${what} cold build`);
    assertAllLocal(cold, WORKSPACE_BUILD_SPAWNS, `${what} cold build`);
    const before = await outputsDigest(ws);
    if (expected) assert.deepEqual(before, expected, `${what}: cold outputs differ from the first build`);
    await bazelClean(ws);
    const warm = ok(await build(flags), `${what} warm build`);
    assertAllHits(warm, WORKSPACE_BUILD_SPAWNS, `${what} warm build`);
    assert.deepEqual(await outputsDigest(ws), before, `${what}: outputs after the cache hit differ`);
    return before;
  };

  let first = new Map<string, string>();
  const sizes = new Map<string, number>();
  try {
    await t.step("grpc://: cold build uploads, rebuild after clean is all remote cache hits", async () => {
      first = await coldThenWarm([`--remote_cache=${grpcUrl}`], "grpc");
      for (const [rel, text] of Object.entries(EXPECTED_TEXT_OUTPUTS)) {
        assert.equal(await Deno.readTextFile(`${ws.dir}/bazel-bin/${rel}`), text, rel);
      }
      for (const rel of MAIN_OUTPUTS) {
        assert.ok(first.has(rel), `missing output ${rel}`);
        sizes.set(rel, (await Deno.stat(`${ws.dir}/bazel-bin/${rel}`)).size);
      }
    });

    await t.step("bazel test //... passes, and its second run is all remote cache hits", async () => {
      await bazelClean(ws);
      const flags = [`--remote_cache=${grpcUrl}`];
      const once = ok(await runBazel(ws, ["test", "//..."], { flags }), "first bazel test");
      // The build actions are already cached; the test and its report run here.
      assert.equal(once.processes!.remoteCacheHit, WORKSPACE_BUILD_SPAWNS, once.processes!.line);
      assert.match(once.stdout + once.stderr, /PASSED/);
      await bazelClean(ws);
      const twice = ok(await runBazel(ws, ["test", "//..."], { flags }), "second bazel test");
      assertAllHits(twice, WORKSPACE_TEST_SPAWNS, "second bazel test");
      assert.match(twice.stdout + twice.stderr, /PASSED/);
    });

    await t.step("--remote_download_minimal: all hits, outputs left in the cache", async () => {
      await bazelClean(ws);
      const r = ok(await build([`--remote_cache=${grpcUrl}`, "--remote_download_minimal"]), "minimal build");
      assertAllHits(r, WORKSPACE_BUILD_SPAWNS, "minimal build");
      // Nothing was downloaded: the top-level outputs are absent (or, where Bazel left a placeholder,
      // not the real bytes) ...
      for (const rel of MAIN_OUTPUTS) {
        const present = await Deno.stat(`${ws.dir}/bazel-bin/${rel}`).then(() => true, () => false);
        if (present) {
          const d = await outputsDigest(ws, [rel]);
          assert.notEqual(
            d.get(rel),
            first.get(rel),
            `${rel} was downloaded under --remote_download_minimal`,
          );
        }
      }
      // ... and every one of them, byte-identical to the first build's, is in Cairn's CAS.
      const cas = createClient(ContentAddressableStorage, createGrpcClientTransport(grpcUrl));
      const digests = MAIN_OUTPUTS.map((rel) => ({
        hash: first.get(rel)!,
        sizeBytes: BigInt(sizes.get(rel)!),
      }));
      const res = await cas.findMissingBlobs({ instanceName: "", blobDigests: digests });
      assert.deepEqual(res.missingBlobDigests, [], "outputs of the first build are missing from the CAS");
    });

    await t.step("--remote_instance_name=main has its own cache", async () => {
      await coldThenWarm(
        [`--remote_cache=${grpcUrl}`, "--remote_instance_name=main"],
        "instance main",
        first,
      );
    });

    await t.step("http://: Bazel's HTTP cache protocol on the same port", async () => {
      await coldThenWarm([`--remote_cache=${cairn.httpUrl}`], "http", first);
    });

    // Bazel's grpcs:// cannot be tested with Debian's bazel-bootstrap 4.2.3: its netty is built without the
    // JDK ALPN classes, so Bazel crashes at channel set-up ("JDK provider does not support ALPN protocol",
    // exit 37) before any byte reaches the server. Its HTTP cache client needs no ALPN: https:// exercises
    // Bazel against the TLS listener (server certificate for localhost). That client ignores
    // --tls_certificate and trusts only the JVM's store, so the test CA goes into a truststore the Bazel
    // server's JVM is started with (one server restart).
    await t.step("https://localhost (TLS listener) with the test CA trusted", async () => {
      const truststore = `${certs.dir}/truststore.jks`;
      const made = await new Deno.Command("keytool", {
        args: [
          "-importcert",
          "-noprompt",
          "-alias",
          "cairn-test-ca",
          "-file",
          certs.caCert,
          "-keystore",
          truststore,
          "-storepass",
          "changeit",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(made.success, `keytool: ${new TextDecoder().decode(made.stderr)}`);
      (ws.startupOptions as string[]).push(
        `--host_jvm_args=-Djavax.net.ssl.trustStore=${truststore}`,
        "--host_jvm_args=-Djavax.net.ssl.trustStorePassword=changeit",
      );
      await coldThenWarm(
        [`--remote_cache=https://localhost:${tlsPort}`, `--tls_certificate=${certs.caCert}`],
        "https",
        first,
      );
    });
  } finally {
    try {
      await ws.cleanup();
    } finally {
      await cairn.stop();
      await Deno.remove(certs.dir, { recursive: true });
    }
  }
});
