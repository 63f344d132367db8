import assert from "node:assert/strict";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import type { StoreDriver } from "../store/types.ts";
import { CairnError, Code } from "../util/error.ts";
import { createHealthService } from "./health_service.ts";
import { createStatusRoute } from "./status_route.ts";
import { rejectsWithCode, serviceClient } from "../../tests/fixtures/service_testing.ts";

const CAS = "build.bazel.remote.execution.v2.ContentAddressableStorage";

Deno.test("Health Check answers SERVING for the server and served services, NOT_FOUND otherwise", async () => {
  const client = serviceClient(Health, createHealthService({ services: [CAS] }));
  assert.equal((await client.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
  assert.equal((await client.check({ service: CAS })).status, HealthCheckResponse_ServingStatus.SERVING);
  await rejectsWithCode(client.check({ service: "nope" }), Code.NotFound);
  assert.deepEqual(Object.keys((await client.list({})).statuses).sort(), ["", CAS]);
});

Deno.test("Health Watch streams the status and each change until cancelled", async () => {
  const health = createHealthService({ services: [CAS] });
  const client = serviceClient(Health, health);
  const abort = new AbortController();
  const seen: HealthCheckResponse_ServingStatus[] = [];
  const done = (async () => {
    try {
      for await (const r of client.watch({ service: "" }, { signal: abort.signal })) {
        seen.push(r.status);
        if (seen.length === 1) health.setStatus("", HealthCheckResponse_ServingStatus.NOT_SERVING);
        if (seen.length === 2) abort.abort();
      }
    } catch { /* cancelled */ }
  })();
  await done;
  assert.deepEqual(seen, [
    HealthCheckResponse_ServingStatus.SERVING,
    HealthCheckResponse_ServingStatus.NOT_SERVING,
  ]);
});

Deno.test("The status route answers 200 JSON when every store answers, 503 naming the failing one", async () => {
  const broken: StoreDriver = {
    kind: "broken",
    hasMany: () => Promise.reject(new CairnError(Code.Unavailable, "redis is down")),
    read: () => Promise.reject(new Error("unused")),
    write: () => Promise.reject(new Error("unused")),
  };
  const slow: StoreDriver = { ...broken, kind: "slow", hasMany: () => new Promise(() => {}) };
  const ok = createStatusRoute({ stores: [["CAS", createMemoryStore()]] });
  const res = await ok(new Request("http://h/status"));
  assert.equal(res?.status, 200);
  assert.deepEqual(await res?.json(), { status: "ok", stores: { CAS: "ok" } });
  assert.equal(await ok(new Request("http://h/other")), undefined);

  const bad = createStatusRoute({
    path: "/healthz",
    stores: [["CAS", createMemoryStore()], ["REDIS", broken], ["SLOW", slow]],
    timeoutSeconds: 0.05,
  });
  const r2 = await bad(new Request("http://h/healthz"));
  assert.equal(r2?.status, 503);
  const body = await r2?.json();
  assert.equal(body.status, "error");
  assert.equal(body.stores.CAS, "ok");
  assert.match(body.stores.REDIS, /redis is down/);
  assert.match(body.stores.SLOW, /no answer within 50 ms/);
});
