// The command line of the real `main.ts`: --help, --version, --check-config (every shipped config), and
// start-up failures that must each print ONE clear line on stderr naming the file or field, exit non-zero,
// and never show a stack trace.
//
// Run: deno test --allow-all tests/cli_test.ts
import assert from "node:assert/strict";
import { type CliResult, memoryCacheConfig, REPO_ROOT, runCairnCli } from "./fixtures/cairn_process.ts";
import { makeTestCerts } from "./fixtures/transport_fixtures.ts";

/** Variables the shipped configs use without a default (plus a few with defaults, to exercise them). */
const CONFIG_ENV: Record<string, string> = {
  SHARED_REDIS_URL: "redis://127.0.0.1:6379/1",
  REDIS_STORE_URL: "redis://127.0.0.1:6379/2",
  BEP_REDIS_STORE_URL: "redis://127.0.0.1:6379/3",
  NATIVE_LINK_AWS_REGION: "us-east-1",
  CAS_ENDPOINT: "127.0.0.1",
  SCHEDULER_ENDPOINT: "127.0.0.1",
  CAIRN_DATA_DIR: "/tmp/cairn-cli-test-data",
};

/** Asserts a failed run: non-zero exit, exactly one `cairn: …` line on stderr, no stack trace. */
function assertOneLineFailure(r: CliResult, ...patterns: RegExp[]): string {
  const where = `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
  assert.notEqual(r.code, 0, where);
  assert.ok(!/^\s+at /m.test(r.stderr), `stack trace on stderr:\n${where}`);
  assert.ok(!r.stderr.includes("Uncaught"), where);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr:\n${where}`);
  const line = lines[0]!;
  assert.match(line, /^cairn: \S/, where);
  assert.ok(line.length < 400, `line too long:\n${where}`);
  for (const p of patterns) assert.match(line, p, where);
  return line;
}

async function tempConfig(text: string): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "cairn_cli_" });
  const path = `${dir}/cairn.json5`;
  await Deno.writeTextFile(path, text);
  return { dir, path };
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

Deno.test("--help and --version print to stdout and exit 0", async () => {
  const help = await runCairnCli(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Cairn \d+\.\d+\.\d+/);
  assert.match(help.stdout, /\[--config\] FILE/);
  assert.match(help.stdout, /--check-config FILE/);
  assert.equal(help.stderr, "");

  const version = await runCairnCli(["--version"]);
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^cairn \d+\.\d+\.\d+\S*\n$/);
  assert.equal(version.stderr, "");
});

Deno.test("--check-config config/local.json5 prints the resolved graph and starts nothing", async () => {
  const r = await runCairnCli(["--check-config", "config/local.json5"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Stores \(\d+\):/m);
  assert.match(r.stdout, /^ {2}CAS: verify/m);
  assert.match(r.stdout, /filesystem \(content_path="\.data\/cas\/content"/);
  assert.match(r.stdout, /^Servers \(\d+\):/m);
  assert.match(r.stdout, /socket_address="127\.0\.0\.1:50051"/);
  assert.match(r.stdout, /cas: instance ""/);
  assert.match(r.stdout, /^config\/local\.json5: ok$/m);
  assert.ok(!r.stdout.includes("listening"), "--check-config must not start servers");
});

Deno.test("every file in config/ passes --check-config", async () => {
  const files = [...Deno.readDirSync(`${REPO_ROOT}config`)]
    .filter((e) => e.isFile && /\.json5?$/.test(e.name))
    .map((e) => `config/${e.name}`)
    .sort();
  assert.ok(files.length >= 5, `found ${files.length} configs`);
  const results: [string, CliResult][] = [];
  for (let i = 0; i < files.length; i += 4) {
    const batch = files.slice(i, i + 4);
    results.push(
      ...await Promise.all(
        batch.map(async (f) =>
          [f, await runCairnCli(["--check-config", f], { env: CONFIG_ENV })] as [string, CliResult]
        ),
      ),
    );
  }
  for (const [file, r] of results) {
    assert.equal(r.code, 0, `${file}: ${r.stderr}`);
    assert.ok(r.stdout.trimEnd().endsWith(`${file}: ok`), `${file}:\n${r.stdout}`);
    assert.equal(r.stderr, "", file);
  }
});

Deno.test("misuse of the command line is one line", async () => {
  assertOneLineFailure(await runCairnCli([]), /no config file given/);
  assertOneLineFailure(await runCairnCli(["--bogus"]), /unknown option --bogus/);
});

Deno.test("malformed JSON5 names the file, line and column", async () => {
  const { dir, path } = await tempConfig('{\n  stores: [\n    { name: "a", memory: {} \n');
  try {
    assertOneLineFailure(
      await runCairnCli(["--config", path]),
      new RegExp(`${escape(path)}:\\d+:\\d+`),
      /JSON5/,
    );
    assertOneLineFailure(await runCairnCli(["--check-config", path]), new RegExp(escape(path)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a missing config file is named", async () => {
  const path = `/tmp/cairn-no-such-dir-${crypto.randomUUID()}/cairn.json5`;
  assertOneLineFailure(await runCairnCli(["--config", path]), new RegExp(escape(path)), /no such file/i);
  assertOneLineFailure(await runCairnCli([path]), new RegExp(escape(path)));
});

Deno.test("an unknown field gets a did-you-mean naming the field path", async () => {
  const config = memoryCacheConfig();
  const stores = config.stores as Record<string, unknown>[];
  stores[1] = { name: "AC_0", memory: { evicton_policy: { max_bytes: 1000 } } };
  const { dir, path } = await tempConfig(JSON.stringify(config));
  try {
    assertOneLineFailure(
      await runCairnCli(["--config", path]),
      new RegExp(escape(path)),
      /stores\[1\]\.memory\.evicton_policy/,
      /did you mean eviction_policy/,
    );
    const server = memoryCacheConfig();
    const services = (server.servers as { services: Record<string, unknown> }[])[0]!.services;
    services["bytestreem"] = services["bytestream"];
    delete services["bytestream"];
    await Deno.writeTextFile(path, JSON.stringify(server));
    assertOneLineFailure(
      await runCairnCli(["--check-config", path]),
      /bytestreem/,
      /did you mean bytestream/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a port in use is one line naming the address and the listener", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { dir, path } = await tempConfig(
    JSON.stringify(memoryCacheConfig({ listener: { socket_address: `127.0.0.1:${taken.addr.port}` } })),
  );
  try {
    const r = await runCairnCli(["--config", path]);
    assertOneLineFailure(
      r,
      new RegExp(`127\\.0\\.0\\.1:${taken.addr.port}`),
      /address already in use/,
      /servers\[0\]\.listener\.http/,
    );
    assert.ok(!/listening on/.test(r.stdout), r.stdout);
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unreadable, invalid or mismatched TLS key is one line naming the file", async () => {
  const certs = await makeTestCerts();
  const { dir, path } = await tempConfig("{}");
  const withTls = (tls: Record<string, string>) =>
    Deno.writeTextFile(
      path,
      JSON.stringify(memoryCacheConfig({ listener: { socket_address: "127.0.0.1:0", tls } })),
    );
  try {
    const missingKey = `${dir}/no-such.key`;
    await withTls({ cert_file: certs.serverCert, key_file: missingKey });
    assertOneLineFailure(await runCairnCli(["--config", path]), new RegExp(escape(missingKey)), /key_file/);

    const garbage = `${dir}/garbage.key`;
    await Deno.writeTextFile(garbage, "this is not a key\n");
    await withTls({ cert_file: certs.serverCert, key_file: garbage });
    assertOneLineFailure(await runCairnCli(["--config", path]), new RegExp(escape(garbage)), /key_file/);

    // The client key does not belong to the server certificate: refused at start, not at every handshake.
    await withTls({ cert_file: certs.serverCert, key_file: certs.clientKey });
    assertOneLineFailure(
      await runCairnCli(["--config", path]),
      new RegExp(escape(certs.clientKey)),
      /does not match/,
    );

    await withTls({
      cert_file: certs.serverCert,
      key_file: certs.serverKey,
      client_ca_file: `${dir}/no-ca.pem`,
    });
    assertOneLineFailure(await runCairnCli(["--config", path]), new RegExp(escape(`${dir}/no-ca.pem`)));
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(certs.dir, { recursive: true });
  }
});
