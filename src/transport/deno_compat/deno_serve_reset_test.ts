/**
 * Guards `deno_serve_reset.ts`: that Deno 2.9.0 still panics on a static answer to a reset HTTP/2 stream
 * (denoland/deno#36046; when this fails, Deno fixed it — 2.9.3 did — and the module can go), that every
 * answer made by `resetSafeResponse` survives the reset (each case in a child process, so a panic cannot take
 * the test runner down), and that the Deno internals it relies on are still there and it keeps statuses,
 * headers, bodies and Deno's native piping of resource-backed bodies.
 *
 * @example
 * ```sh
 * deno test --allow-all src/transport/deno_compat/deno_serve_reset_test.ts
 * ```
 * @module
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { resetSafeResponse, resourceIdOf } from "./deno_serve_reset.ts";

const PROBE = new URL("../../../tests/fixtures/deno_serve_reset_probe.ts", import.meta.url).pathname;

async function probe(...cases: string[]): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "--allow-read", PROBE, ...cases],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

Deno.test("Deno 2.9.0 still panics answering a reset HTTP/2 stream with a static body (denoland/deno#36046)", async () => {
  for (const c of ["text", "null", "echo"]) {
    const { code, text } = await probe(c);
    assert.notEqual(
      code,
      0,
      `Deno ${Deno.version.deno} no longer panics on case "${c}": denoland/deno#36046 is fixed in this Deno ` +
        `(2.9.3 has the fix); deno_compat/deno_serve_reset.ts can go. Output:\n${text}`,
    );
    assert.match(text, /HTTP state error: Expected to be last strong reference/, text);
  }
});

Deno.test("resetSafeResponse: answers to reset HTTP/2 streams, and trailers set after them, do not panic", async () => {
  const cases = ["safe-text", "safe-null", "safe-204", "safe-echo", "trailers"];
  const { code, text } = await probe(...cases);
  assert.doesNotMatch(text, /panicked/, text);
  assert.equal(code, 0, text);
  for (const c of cases) assert.match(text, new RegExp(`case ${c} answered`), text);
  assert.match(text, /ALIVE/);
});

Deno.test("Deno internals: resource backing of streams, core.resources(), the inner response status", () => {
  const file = Deno.openSync(new URL(import.meta.url).pathname);
  const readable = file.readable;
  const rid = resourceIdOf(readable);
  assert.equal(typeof rid, "number", "a file's readable has no [[resourceBacking]] rid any more");
  const d = Deno as unknown as Record<symbol, { core: { resources(): Record<string, string> } }> & {
    internal: symbol;
  };
  assert.ok(String(rid) in d[d.internal]!.core.resources(), "core.resources() does not list an open file");
  assert.equal(resourceIdOf(new ReadableStream()), undefined);
  // A resource-backed body stays the same stream (Deno pipes it natively).
  const safe = resetSafeResponse(new Response(readable));
  assert.equal(resourceIdOf(safe.body!), rid);
  void safe.body!.cancel();
  // A 204 keeps its status, with a (streamed, empty) body Deno will not panic on.
  const noContent = resetSafeResponse(new Response(null, { status: 204, headers: { "x-a": "1" } }));
  assert.equal(noContent.status, 204, "the inner response's status can no longer be set");
  assert.notEqual(noContent.body, null);
  assert.equal(noContent.headers.get("x-a"), "1");
});

Deno.test("resetSafeResponse through Deno.serve: statuses, headers, bodies, HEAD lengths, an echoed 3 MiB body", async () => {
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/echo") return resetSafeResponse(new Response(req.body));
    if (path === "/204") {
      return resetSafeResponse(new Response(null, { status: 204, headers: { "x-a": "1" } }));
    }
    if (path === "/head") {
      return resetSafeResponse(new Response(null, { headers: { "content-length": "1234" } }));
    }
    return resetSafeResponse(
      new Response("not here\n", { status: 404, statusText: "Nope", headers: { "x-b": "2" } }),
    );
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const missing = await fetch(`${base}/x`);
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get("x-b"), "2");
  assert.equal(await missing.text(), "not here\n");
  const noContent = await fetch(`${base}/204`, { method: "OPTIONS" });
  assert.equal(noContent.status, 204);
  assert.equal(noContent.headers.get("x-a"), "1");
  assert.equal(await noContent.text(), "");
  const head = await fetch(`${base}/head`, { method: "HEAD" });
  assert.equal(head.headers.get("content-length"), "1234");
  await head.body?.cancel();
  // HTTP/1.1 echo of a large body: needs Deno's native piping of the request body (a JavaScript-pumped
  // body stalls against fetch), which resetSafeResponse keeps.
  const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i & 0xff);
  const echo = await fetch(`${base}/echo`, { method: "POST", body: big });
  assert.deepEqual(new Uint8Array(await echo.arrayBuffer()), big);
  // The same over HTTP/2.
  const session = http2.connect(base);
  try {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const s = session.request({ ":path": "/x" });
      let status = 0;
      let body = "";
      s.setEncoding("utf8");
      s.on("response", (h) => status = Number(h[":status"]));
      s.on("data", (d: string) => body += d);
      s.on("end", () => resolve({ status, body }));
      s.on("error", reject);
      s.end();
    });
    assert.deepEqual(answer, { status: 404, body: "not here\n" });
  } finally {
    session.destroy();
  }
});
