/**
 * The live status page in a real browser: headless Chromium loads `/` of the real all-in-one Cairn while
 * remote actions run; the page shows the connected worker with its platform properties and the running
 * action, then the finished one, updated live; a screenshot is saved and is not blank. The page and its
 * API are read-only.
 */
import assert from "node:assert/strict";
import { decodePng, launchChromium } from "./fixtures/chromium.ts";
import { buildAction, ExecClient, startAllInOne } from "./fixtures/exec_fixtures.ts";

/** Polls `check` in the page until it returns true (bounded; the page updates every two seconds). */
async function until(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test("status page: Chromium shows the connected worker and live actions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cairn_status_page_" });
  const cairn = await startAllInOne({ dataDir: `${dir}/data` });
  const http = cairn.url.replace(/^grpc:/, "http:");
  const browser = await launchChromium();
  const client = new ExecClient(cairn.url);
  // An action that runs long enough for the page to show it running (it updates every two seconds).
  const slow = buildAction({ argv: ["/bin/sleep", "15"] });
  let running: Promise<unknown> | undefined;
  try {
    await browser.navigate(`${http}/`);
    const text = () => browser.evaluate<string>("document.body.innerText");
    await until(
      "the page to render a status",
      () => browser.evaluate<boolean>("document.body.dataset.ready === 'true'"),
    );
    await until("the worker in the workers table", async () => {
      const rows = await browser.evaluate<number>("document.querySelectorAll('#workers tbody tr').length");
      return rows === 1;
    });
    const workersText = await browser.evaluate<string>("document.querySelector('#workers').innerText");
    assert.match(workersText, /worker-/);
    assert.match(workersText, /OSFamily=linux/);
    assert.match(workersText, /MAIN/);

    await client.upload(slow.blobs);
    running = client.execute(slow.actionDigest, { skipCacheLookup: true });
    const hash = slow.actionDigest.hash.slice(0, 12);
    await until("the running action", async () => {
      const t = await browser.evaluate<string>("document.querySelector('#actions').innerText");
      return t.includes(hash) && t.includes("executing");
    });
    assert.equal(await browser.evaluate<string>("document.getElementById('t-running').textContent"), "1");

    // A quick action finishes and shows among the finished ones.
    const quick = buildAction({ argv: ["/bin/echo", `status page ${crypto.randomUUID()}`] });
    await client.upload(quick.blobs);
    const done = await client.execute(quick.actionDigest);
    assert.equal(done.response.result?.exitCode, 0);
    await until("the finished action", async () => {
      const t = await browser.evaluate<string>("document.querySelector('#finished').innerText");
      return t.includes(quick.actionDigest.hash.slice(0, 12)) && t.includes("exit 0");
    });
    assert.match(await text(), /Stores/);
    assert.match(await browser.evaluate<string>("document.querySelector('#stores').innerText"), /CAS/);
    assert.deepEqual(browser.consoleMessages.filter((m) => m.startsWith("uncaught")), []);

    const png = await browser.screenshot();
    // Kept where CAIRN_TEST_ARTIFACTS points (if set), else in the test's temp dir.
    const artifacts = Deno.env.get("CAIRN_TEST_ARTIFACTS") || dir;
    await Deno.writeFile(`${artifacts}/status_page.png`, png);
    const { width, height, rgba } = decodePng(png);
    assert.ok(width >= 800 && height >= 600, `${width}x${height}`);
    // Not blank: many pixels differ from the background, in more than two colours.
    const colours = new Set<number>();
    let differing = 0;
    for (let i = 0; i < rgba.length; i += 4) {
      const c = (rgba[i]! << 16) | (rgba[i + 1]! << 8) | rgba[i + 2]!;
      colours.add(c);
      if (rgba[i] !== rgba[0] || rgba[i + 1] !== rgba[1] || rgba[i + 2] !== rgba[2]) differing++;
    }
    assert.ok(differing > width * height * 0.02, `only ${differing} pixels differ from the background`);
    assert.ok(colours.size > 16, `only ${colours.size} colours`);

    // Read-only: other methods are 405; the API is JSON.
    for (const path of ["/", "/api/status", "/api/status/events", "/_status/app.js"]) {
      const r = await fetch(`${http}${path}`, { method: "POST", body: "x" });
      await r.body?.cancel();
      assert.equal(r.status, 405, path);
    }
    const api = await fetch(`${http}/api/status`);
    assert.equal(api.headers.get("content-type"), "application/json");
    const doc = await api.json();
    assert.equal(doc.workers.length, 1);

    const slowRun = await running as Awaited<ReturnType<typeof client.execute>>;
    assert.equal(slowRun.response.result?.exitCode, 0);
  } finally {
    await running?.catch(() => {});
    await browser.close();
    await cairn.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
