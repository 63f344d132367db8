import assert from "node:assert/strict";
import { createProgress, currentProgress } from "./progress.ts";

Deno.test("progress: lines with the count, the total and an ETA; the status page sees the work until it ends", () => {
  const lines: string[] = [];
  const p = createProgress("Indexing store CAS", { total: 1000, everyMs: 0, log: (l) => lines.push(l) });
  p.update(250);
  const now = currentProgress().find((x) => x.what === "Indexing store CAS");
  assert.equal(now?.done, 250);
  assert.equal(now?.total, 1000);
  assert.match(
    lines[0] ?? "",
    /^cairn: Indexing store CAS: 250 of 1,000 \(\d[\d,]*\/s(, about \d+ s left)?\)$/,
  );
  p.update(1000, 1000);
  p.finish();
  assert.equal(currentProgress().some((x) => x.what === "Indexing store CAS"), false);
  assert.match(lines.at(-1) ?? "", /^cairn: Indexing store CAS: done, 1,000 in \d+\.\d s$/);
});

Deno.test("progress: no line before everyMs has passed", () => {
  const lines: string[] = [];
  const p = createProgress("quick", { everyMs: 60_000, log: (l) => lines.push(l) });
  p.update(5);
  p.finish();
  assert.deepEqual(lines, []);
});
