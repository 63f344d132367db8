import assert from "node:assert/strict";
import { createSandbox, type SandboxRun } from "../src/worker/sandbox.ts";

async function withDirs(
  fn: (dir: string, run: (argv: string[], extra?: Partial<SandboxRun>) => SandboxRun) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "cairn-sandbox-test-" });
  const actionDir = `${dir}/action`;
  await Deno.mkdir(`${actionDir}/root`, { recursive: true });
  await Deno.chmod(actionDir, 0o777);
  await Deno.chmod(`${actionDir}/root`, 0o777);
  const run = (argv: string[], extra: Partial<SandboxRun> = {}): SandboxRun => ({
    argv,
    writableDir: actionDir,
    cwd: `${actionDir}/root`,
    env: { PATH: "/usr/bin:/bin" },
    stdoutPath: `${dir}/stdout`,
    stderrPath: `${dir}/stderr`,
    timeoutMs: 20_000,
    ...extra,
  });
  try {
    await fn(dir, run);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const read = (p: string) => Deno.readTextFile(p);

Deno.test("sandbox: an action cannot see host files outside its inputs", async () => {
  const secretDir = await Deno.makeTempDir({ dir: "/root", prefix: "cairn-secret-" });
  const secret = `${secretDir}/secret.txt`;
  await Deno.writeTextFile(secret, "top secret");
  const tmpSecret = await Deno.makeTempFile({ prefix: "cairn-secret-" });
  try {
    const sandbox = await createSandbox({ kind: "bwrap" });
    await withDirs(async (dir, run) => {
      const r = await sandbox.run(
        run(["/bin/sh", "-c", `cat ${secret}; cat ${tmpSecret}; ls /root; echo done`]),
      );
      assert.equal(r.exitCode, 0);
      assert.equal(await read(`${dir}/stdout`), "done\n");
      assert.match(await read(`${dir}/stderr`), /No such file/);
      // The work dir is writable, inputs elsewhere are not.
      const w = await sandbox.run(
        run(["/bin/sh", "-c", "echo ok > out.txt && ! touch /usr/cairn-x 2>/dev/null"]),
      );
      assert.equal(w.exitCode, 0, await read(`${dir}/stderr`));
      assert.equal(await read(`${dir}/action/root/out.txt`), "ok\n");
    });
  } finally {
    await Deno.remove(secretDir, { recursive: true });
    await Deno.remove(tmpSecret);
  }
});

Deno.test("sandbox: no network unless allowed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) accepted.push(c);
  })();
  try {
    const sandbox = await createSandbox({ kind: "bwrap" });
    await withDirs(async (_dir, run) => {
      const script = `echo hi > /dev/tcp/127.0.0.1/${port}`;
      const denied = await sandbox.run(run(["/bin/bash", "-c", script]));
      assert.notEqual(denied.exitCode, 0);
      assert.equal(accepted.length, 0);
      const allowed = await sandbox.run(run(["/bin/bash", "-c", script], { allowNetwork: true }));
      assert.equal(allowed.exitCode, 0);
    });
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const c of accepted) c.close();
  }
});

function sleepers(tag: string): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      const state = Deno.readTextFileSync(`/proc/${e.name}/stat`).split(") ")[1]?.[0];
      if (cmd.includes(tag) && state !== "Z") n++;
    } catch {
      // Gone meanwhile.
    }
  }
  return n;
}

Deno.test("sandbox: background processes do not outlive the action", async () => {
  const sandbox = await createSandbox({ kind: "bwrap" });
  await withDirs(async (_dir, run) => {
    const r = await sandbox.run(run(["/bin/sh", "-c", "sleep 1017 & echo started"]));
    assert.equal(r.exitCode, 0);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(sleepers("1017"), 0, "a background sleep survived the action");
  });
});

Deno.test("sandbox: a timeout kills the whole action and keeps the output so far", async () => {
  for (const kind of ["bwrap", "none"] as const) {
    const sandbox = await createSandbox({ kind });
    await withDirs(async (dir, run) => {
      const t0 = Date.now();
      const r = await sandbox.run(
        run(["/bin/sh", "-c", "echo before; sleep 1018 & sleep 1019; echo after"], { timeoutMs: 500 }),
      );
      assert.ok(r.timedOut, kind);
      assert.ok(Date.now() - t0 < 5000, `${kind}: took too long`);
      assert.equal(await read(`${dir}/stdout`), "before\n");
      await new Promise((res) => setTimeout(res, 100));
      assert.equal(sleepers("1018") + sleepers("1019"), 0, `${kind}: a process survived the timeout`);
    });
  }
});

Deno.test("sandbox: 'none' runs without bwrap in the working directory", async () => {
  const sandbox = await createSandbox({ kind: "none", bwrapPath: "/nonexistent/bwrap" });
  await withDirs(async (dir, run) => {
    const r = await sandbox.run(run(["/bin/sh", "-c", "pwd; exit 7"]));
    assert.equal(r.exitCode, 7);
    assert.equal(await read(`${dir}/stdout`), `${dir}/action/root\n`);
  });
  await assert.rejects(createSandbox({ kind: "bwrap", bwrapPath: "/nonexistent/bwrap" }), /sandbox: "none"/);
});

Deno.test("sandbox: a root worker runs actions unprivileged, unable to modify read-only inputs", async () => {
  const sandbox = await createSandbox({ kind: "bwrap" });
  await withDirs(async (dir, run) => {
    const input = `${dir}/action/root/in.txt`;
    await Deno.writeTextFile(input, "original");
    await Deno.chmod(input, 0o444);
    const r = await sandbox.run(
      run(["/bin/sh", "-c", "chmod 666 in.txt; echo changed > in.txt; s=$?; id -u; exit $s"]),
    );
    if (Deno.uid() === 0) {
      assert.equal(await read(`${dir}/stdout`), "65534\n");
      assert.notEqual(r.exitCode, 0);
      assert.equal(await read(input), "original");
    } else {
      // Without root the action runs as the worker's own user (as in NativeLink).
      assert.equal(await read(`${dir}/stdout`), `${Deno.uid()}\n`);
    }
  });
});
