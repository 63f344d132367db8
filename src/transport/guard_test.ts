import assert from "node:assert/strict";
import { DEFAULT_LIMITS, guarded, resolveLimits, UploadAdmission } from "./guard.ts";

Deno.test("resolveLimits fills defaults and converts seconds", () => {
  assert.deepEqual(resolveLimits({ socket_address: ":0" }), DEFAULT_LIMITS);
  const l = resolveLimits({
    socket_address: ":0",
    limits: { max_uploads: 5, upload_idle_timeout_s: 0.5, header_timeout_s: 0 },
    advanced_http: { experimental_http2_max_concurrent_streams: 10 },
  });
  assert.equal(l.maxUploads, 5);
  assert.equal(l.uploadIdleMs, 500);
  assert.equal(l.headerTimeoutMs, DEFAULT_LIMITS.headerTimeoutMs);
  assert.equal(l.maxConcurrentStreams, 10);
});

Deno.test("UploadAdmission refuses past the per-connection and the total limit; release is idempotent", () => {
  const a = new UploadAdmission({ ...DEFAULT_LIMITS, maxUploadsPerConnection: 2, maxUploads: 3 });
  const c1 = {}, c2 = {};
  const r1 = a.admit(c1)!, r2 = a.admit(c1)!;
  assert.equal(a.admit(c1), undefined);
  const r3 = a.admit(c2)!;
  assert.equal(a.admit(c2), undefined, "total limit");
  r1();
  r1();
  assert.equal(a.active, 2);
  assert.ok(a.admit(c2));
  r2();
  r3();
});

Deno.test("guarded() keeps a throwing callback from escaping and logs once", () => {
  const warnings: string[] = [];
  const log = { debug() {}, warn: (m: string) => void warnings.push(m), error() {} };
  const cb = guarded(log, "test event", () => {
    throw new Error("The session has been destroyed");
  });
  cb();
  cb();
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /session has been destroyed/);
});
