/**
 * Defaults of client authentication: without an `auth` section a loopback server is open and says nothing,
 * a server beyond loopback is open too (NativeLink's configs keep working) but warns at start; servers with
 * an `auth` section say how they authenticate; the `auth` section is validated with JSON paths.
 */
import assert from "node:assert/strict";
import { describeAuth, isLoopbackHost } from "../../src/app.ts";
import { parseConfig } from "../../src/config/mod.ts";
import type { ServerConfig } from "../../src/config/types.ts";

const server = (extra: Partial<ServerConfig> = {}): ServerConfig => ({
  listener: { http: { socket_address: "0.0.0.0:50051", cors_allowed_origins: [] } },
  services: { cas: [{ instance_name: "", cas_store: "CAS" }] },
  ...extra,
});

Deno.test("auth defaults: open on loopback; a warning beyond loopback; a summary with an auth section", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]) {
    assert.ok(isLoopbackHost(h), h);
  }
  for (const h of ["0.0.0.0", "::", "10.0.0.1", "192.168.1.2"]) assert.ok(!isLoopbackHost(h), h);
  assert.equal(describeAuth(server(), "127.0.0.1"), undefined);
  assert.match(
    describeAuth(server(), "0.0.0.0") ?? "",
    /^WARNING: listening beyond loopback without an auth/,
  );
  // A worker-API-only server has no client services to protect (workers authenticate on their own).
  assert.equal(
    describeAuth(server({ services: { worker_api: { scheduler: "MAIN" } } }), "0.0.0.0"),
    undefined,
  );
  assert.equal(
    describeAuth(server({ auth: { anonymous: "read", users: [] } }), "0.0.0.0"),
    "requires client credentials (0 user(s); anonymous clients: read)",
  );
});

Deno.test("auth config: defaults and validation errors name the field", () => {
  const base = (auth: unknown) =>
    JSON.stringify({
      stores: [{ name: "CAS", memory: {} }],
      servers: [{
        listener: { http: { socket_address: "127.0.0.1:0" } },
        services: { cas: [{ cas_store: "CAS" }] },
        auth,
      }],
    });
  const ok = parseConfig(base({}), "a.json5");
  assert.deepEqual(ok.servers[0]!.auth, { anonymous: "none", users: [] });
  const bad = (auth: unknown, re: RegExp) => assert.throws(() => parseConfig(base(auth), "a.json5"), re);
  bad({ anonymous: "some" }, /servers\[0\]\.auth\.anonymous/);
  bad({ users: [{ name: "x", token_sha256: "abc", permissions: {} }] }, /token_sha256 must be 64 hex digits/);
  bad({ users: [{ name: "x", permissions: {} }] }, /needs token_sha256, password_sha256 or mtls_subject/);
  bad(
    { users: [{ name: "x", mtls_subject: "x", permissions: { "*": ["write"] } }] },
    /servers\[0\]\.auth\.users\[0\]\.permissions/,
  );
  bad(
    {
      users: [{ name: "x", mtls_subject: "a", permissions: {} }, {
        name: "x",
        mtls_subject: "b",
        permissions: {},
      }],
    },
    /used twice/,
  );
});
