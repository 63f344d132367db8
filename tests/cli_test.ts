// The command line of the real `main.ts`: --help, --version, --check-config (every shipped config), and
// start-up failures that must each print ONE clear line on stderr naming the file or field, exit non-zero,
// and never show a stack trace.
//
// Run: deno test --allow-all tests/cli_test.ts
import assert from "node:assert/strict";
import {
  type CliResult,
  memoryCacheConfig,
  narrowPermissions,
  REPO_ROOT,
  runCairnCli,
} from "./fixtures/cairn_process.ts";
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
  // Relative paths are resolved against the directory Cairn starts in (here the repository root).
  assert.match(r.stdout, new RegExp(`filesystem \\(content_path="${escape(REPO_ROOT)}\\.data/cas/content"`));
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

Deno.test("a setting Cairn does not implement is refused at start with its JSON path, before any port is bound", async () => {
  const port = freePort();
  const config = memoryCacheConfig({ listener: { socket_address: `127.0.0.1:${port}` } });
  (config.servers as Record<string, unknown>[])[0]!.experimental_identity_header = { header_name: "x-user" };
  const { dir, path } = await tempConfig(JSON.stringify(config));
  try {
    const r = await runCairnCli(["--config", path]);
    assertOneLineFailure(r, /servers\[0\]\.experimental_identity_header: not supported by Cairn yet$/);
    assert.ok(!/listening on/.test(r.stdout), r.stdout);
    const check = await runCairnCli(["--check-config", path]);
    assertOneLineFailure(check, /servers\[0\]\.experimental_identity_header: not supported by Cairn yet$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a relative path that cannot be created is one line naming the field, before any port is bound", async () => {
  const { dir, path } = await tempConfig("{}");
  try {
    // `blocker` is a file, so `blocker/cas` cannot be created (relative to the start directory, `dir`).
    await Deno.writeTextFile(`${dir}/blocker`, "");
    const config = memoryCacheConfig({ listener: { socket_address: `127.0.0.1:${freePort()}` } });
    (config.stores as unknown[]).push({
      name: "DISK",
      filesystem: { content_path: "blocker/cas", temp_path: "tmp" },
    });
    await Deno.writeTextFile(path, JSON.stringify(config));
    const r = await runCairnCli(["--config", path], { cwd: dir, permissions: narrowPermissions(dir) });
    assertOneLineFailure(
      r,
      new RegExp(
        `stores\\[2\\]\\.filesystem\\.content_path: cannot create directory ${escape(dir)}/blocker/cas: `,
      ),
    );
    assert.ok(!/listening on/.test(r.stdout), r.stdout);
    // The relative temp_path was not created in the repository: it means `dir/tmp`, checked after content_path.
    assert.equal(await Deno.stat(`${REPO_ROOT}tmp`).then(() => true, () => false), false);

    // Once the path can be created, the same config starts (and data lands under the start directory).
    await Deno.remove(`${dir}/blocker`);
    const ok = await runCairnCli(["--check-config", path], { cwd: dir, permissions: narrowPermissions(dir) });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`content_path="${escape(dir)}/blocker/cas"`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a worker whose work directory is not writable is one line naming the field; no worker, no port", async () => {
  // /sys/kernel exists and refuses new files, even to root.
  const port = freePort();
  const text = (await Deno.readTextFile(`${REPO_ROOT}config/local.json5`))
    .replace('"${CAIRN_DATA_DIR:-.data}/work"', '"/sys/kernel"');
  const { dir, path } = await tempConfig(text);
  try {
    const r = await runCairnCli(["--config", path], {
      cwd: dir,
      env: { CAIRN_LISTEN: `127.0.0.1:${port}`, CAIRN_WORKER_API_PORT: String(freePort()) },
      permissions: ["--allow-all"],
    });
    assertOneLineFailure(
      r,
      /workers\[0\]\.local\.work_directory: cannot write in directory \/sys\/kernel: permission denied$/,
    );
    assert.ok(!/listening on|worker 0 started/.test(r.stdout), r.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
