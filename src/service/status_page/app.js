// Cairn's live status page: subscribes to /api/status/events (server-sent events, one status document every
// two seconds) and draws it. Every value is put in the page as text (never as HTML): worker names, platform
// properties and error messages come from clients and actions.

/**
 * @typedef {{ id: string, scheduler: string, properties: Record<string, string[]>, running: number,
 *   maxInflight: number, lastSeenMsAgo: number }} Worker
 * @typedef {{ id: string, scheduler: string, digest: string, stage: string, ageMs: number,
 *   worker: string | null, attempts: number }} Action
 * @typedef {{ digest: string, scheduler: string, worker: string | null, exitCode: number | null,
 *   error: string | null, tookMs: number, endedAt: number }} Finished
 * @typedef {{ at: number, scheduler: string, digest: string, worker: string | null, error: string }} Failure
 * @typedef {{ name: string, kind: string, bytes: number, maxBytes: number, count: number }} Store
 * @typedef {{ t: number, calls: number, errors: number, running: number, queued: number }} RatePoint
 * @typedef {{ what: string, done: number, total: number, etaSeconds: number | null }} Progress
 * @typedef {{ version: string, uptimeSeconds: number, now: number, workers: Worker[], actions: Action[],
 *   finished: Finished[], failures: Failure[], stores: Store[], casHitRate: number | null,
 *   acHitRate: number | null, rates: RatePoint[], progress: Progress[] }} Status
 */

/** @param {string} id */
function el(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`missing #${id}`);
  return e;
}

/**
 * @param {string} tag
 * @param {string} [text]
 * @param {string} [cls]
 */
function node(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/** @param {number} ms */
function ago(ms) {
  const s = Math.max(0, ms / 1000);
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** @param {number} n */
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

/** @param {number | null} r */
function pct(r) {
  return r === null ? "–" : `${(r * 100).toFixed(1)}%`;
}

/** @param {string} digest */
function shortDigest(digest) {
  const [hash = "", size = ""] = digest.split("/");
  return `${hash.slice(0, 12)}…/${size}`;
}

/**
 * Replaces a table's rows; shows its empty note when there are none.
 * @param {string} id
 * @param {HTMLElement[][]} rows
 */
function fill(id, rows) {
  const body = el(id).querySelector("tbody");
  if (!body) return;
  body.replaceChildren(...rows.map((cells) => {
    const tr = node("tr");
    for (const c of cells) {
      const td = node("td");
      td.append(c);
      tr.append(td);
    }
    return tr;
  }));
  el(id).hidden = rows.length === 0;
  el(`${id}-empty`).hidden = rows.length > 0;
}

/**
 * A small line chart of `series` (each a list of numbers on the same x axis).
 * @param {string} id
 * @param {{ values: number[], color: string }[]} series
 */
function chart(id, series) {
  const canvas = /** @type {HTMLCanvasElement} */ (el(id));
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  ctx.strokeStyle = "#e3e6ec";
  ctx.beginPath();
  ctx.moveTo(0, h - 0.5);
  ctx.lineTo(w, h - 0.5);
  ctx.stroke();
  ctx.fillStyle = "#6b7385";
  ctx.font = "11px system-ui";
  ctx.fillText(max >= 10 ? max.toFixed(0) : max.toFixed(2), 4, 12);
  for (const s of series) {
    const n = s.values.length;
    if (n < 2) continue;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.values.forEach((v, i) => {
      const x = (i / (n - 1)) * (w - 2) + 1;
      const y = h - 2 - (v / max) * (h - 18);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

/** @param {Status} s */
function render(s) {
  const health = el("health");
  health.textContent = "live";
  health.className = "pill ok";
  el("meta").textContent = `version ${s.version} · up ${ago(s.uptimeSeconds * 1000)} · updated ${
    new Date(s.now).toLocaleTimeString()
  }`;
  const running = s.actions.filter((a) => a.stage === "executing").length;
  el("t-workers").textContent = String(s.workers.length);
  el("t-running").textContent = String(running);
  el("t-queued").textContent = String(s.actions.length - running);
  el("t-cas").textContent = pct(s.casHitRate);
  el("t-ac").textContent = pct(s.acHitRate);
  const last = s.rates.at(-1);
  el("t-rps").textContent = last ? last.calls.toFixed(1) : "–";

  chart("c-rps", [{ values: s.rates.map((r) => r.calls), color: "#2f6fde" }]);
  chart("c-err", [{ values: s.rates.map((r) => r.errors), color: "#d64545" }]);
  chart("c-act", [
    { values: s.rates.map((r) => r.running), color: "#2f6fde" },
    { values: s.rates.map((r) => r.queued), color: "#d9822b" },
  ]);

  fill(
    "workers",
    s.workers.map((w) => {
      const props = node("div");
      for (const [k, vs] of Object.entries(w.properties)) {
        for (const v of vs) props.append(node("span", v === "" ? k : `${k}=${v}`, "tag"));
      }
      return [
        node("span", w.id, "mono"),
        node("span", w.scheduler),
        props,
        node("span", `${w.running} / ${w.maxInflight || "∞"}`),
        node("span", `${ago(w.lastSeenMsAgo)} ago`),
      ];
    }),
  );

  fill(
    "actions",
    s.actions.map((a) => [
      node("span", shortDigest(a.digest), "mono"),
      node("span", a.stage, `stage-${a.stage}`),
      node("span", ago(a.ageMs)),
      node("span", a.worker ?? "–", "mono"),
      node("span", String(a.attempts)),
    ]),
  );

  fill(
    "finished",
    s.finished.map((f) => [
      node("span", shortDigest(f.digest), "mono"),
      f.error
        ? node("span", f.error, "bad")
        : node("span", `exit ${f.exitCode ?? "?"}`, f.exitCode === 0 ? "ok" : "bad"),
      node("span", ago(f.tookMs)),
      node("span", f.worker ?? "–", "mono"),
      node("span", `${ago(s.now - f.endedAt)} ago`),
    ]),
  );

  fill(
    "stores",
    s.stores.map((st) => {
      const frac = st.maxBytes > 0 ? Math.min(1, st.bytes / st.maxBytes) : 0;
      const bar = node("div", undefined, frac > 0.9 ? "bar high" : "bar");
      const inner = node("div");
      inner.style.width = `${(frac * 100).toFixed(1)}%`;
      bar.append(inner);
      return [
        node("span", st.name, "mono"),
        node("span", st.kind),
        node("span", bytes(st.bytes)),
        node("span", st.maxBytes > 0 ? bytes(st.maxBytes) : "no limit"),
        st.maxBytes > 0 ? bar : node("span"),
        node("span", String(st.count)),
      ];
    }),
  );

  fill(
    "failures",
    s.failures.map((f) => [
      node("span", new Date(f.at).toLocaleTimeString()),
      node("span", shortDigest(f.digest), "mono"),
      node("span", f.worker ?? "–", "mono"),
      node("span", f.error, "bad"),
    ]),
  );

  el("progress-section").hidden = s.progress.length === 0;
  el("progress").replaceChildren(...s.progress.map((p) =>
    node(
      "li",
      `${p.what}: ${p.done.toLocaleString()} of ${p.total ? p.total.toLocaleString() : "?"}${
        p.etaSeconds !== null ? `, about ${ago(p.etaSeconds * 1000)} left` : ""
      }`,
    )
  ));
  document.body.dataset.ready = "true";
}

function offline() {
  const health = el("health");
  health.textContent = "disconnected, retrying…";
  health.className = "pill bad";
}

const events = new EventSource("/api/status/events");
events.addEventListener("status", (e) => render(JSON.parse(/** @type {MessageEvent} */ (e).data)));
events.addEventListener("error", offline);
