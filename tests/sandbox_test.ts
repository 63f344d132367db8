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

/**
 * Processes tagged `tag` once the kernel had time to reap them: the killed PID namespace's members die
 * asynchronously, so on a loaded machine poll for up to 30 s before counting survivors.
 */
async function settledSleepers(tag: string): Promise<number> {
  const deadline = Date.now() + 30_000;
  while (sleepers(tag) > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
  return sleepers(tag);
}

function sleepers(tag: string): number {
  // `ps` rather than reading /proc: Deno grants /proc only with --allow-all.
  const out = new Deno.Command("ps", { args: ["-eo", "stat=,args="], stdout: "piped" }).outputSync();
  return new TextDecoder().decode(out.stdout).split("\n")
    .filter((line) => line.includes(`sleep ${tag}`) && !line.trimStart().startsWith("Z")).length;
}

Deno.test("sandbox: background processes do not outlive the action", async () => {
  const sandbox = await createSandbox({ kind: "bwrap" });
  await withDirs(async (_dir, run) => {
    const r = await sandbox.run(run(["/bin/sh", "-c", "sleep 1017 & echo started"]));
    assert.equal(r.exitCode, 0);
    assert.equal(await settledSleepers("1017"), 0, "a background sleep survived the action");
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
      assert.equal(
        await settledSleepers("1018") + await settledSleepers("1019"),
        0,
        `${kind}: a process survived the timeout`,
      );
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

Deno.test("sandbox: a cancel at any moment of bwrap's set-up leaves no sandbox or process behind", async () => {
  const sandbox = await createSandbox({ kind: "bwrap" });
  await withDirs(async (dir, run) => {
    // Cancel after 0..14 ms: most land while bwrap is still building the sandbox, before its init has
    // armed --die-with-parent; the whole process group must die all the same.
    for (let delayMs = 0; delayMs < 15; delayMs++) {
      const abort = new AbortController();
      const pending = sandbox.run(run(["/bin/sleep", "1031"], { signal: abort.signal }));
      setTimeout(() => abort.abort(), delayMs);
      const r = await pending;
      assert.ok(r.killed || r.exitCode !== 0, `run ${delayMs}: was not stopped`);
    }
    assert.equal(await settledSleepers("1031"), 0, "an action outlived its cancelled sandbox");
    const out = new Deno.Command("ps", { args: ["-eo", "args="], stdout: "piped" }).outputSync();
    const orphans = new TextDecoder().decode(out.stdout).split("\n").filter((l) =>
      l.includes("bwrap") && l.includes(dir)
    );
    assert.deepEqual(orphans, [], "a bwrap of this test survived");
  });
});
