import assert from "node:assert/strict";
import { CairnError, Code } from "../util/error.ts";
import { sha256Hex } from "./credentials.ts";
import { AuthPolicy } from "./policy.ts";
import { createWorkerAuthenticator } from "./worker_auth.ts";
import { instanceOfRequest, permissionOf } from "./guard.ts";

function codeOf(fn: () => unknown): Code | "ok" {
  try {
    fn();
    return "ok";
  } catch (err) {
    assert.ok(err instanceof CairnError, String(err));
    return err.code;
  }
}

const bearer = (t: string) => new Headers({ authorization: `Bearer ${t}` });
const basic = (u: string, p: string) => new Headers({ authorization: `Basic ${btoa(`${u}:${p}`)}` });

const policy = new AuthPolicy({
  anonymous: "read",
  users: [
    {
      name: "ci",
      token_sha256: sha256Hex("ci-token"),
      permissions: { "*": ["read", "write_cas", "write_ac"] },
    },
    {
      name: "dev",
      password_sha256: sha256Hex("pw"),
      permissions: { main: ["read", "execute"], "": ["read"] },
    },
    { name: "robot", mtls_subject: "robot.example", permissions: { "*": ["read", "execute"] } },
  ],
}, [{ name: "cairn-worker", token: "internal-token" }]);

Deno.test("AuthPolicy: bearer, basic, mTLS and anonymous identities get their permissions", () => {
  const ci = policy.identify(bearer("ci-token"));
  assert.equal(ci.name, "ci");
  assert.equal(codeOf(() => policy.authorize(ci, "any", "write_ac")), "ok");
  assert.equal(codeOf(() => policy.authorize(ci, "any", "execute")), Code.PermissionDenied);

  const dev = policy.identify(basic("dev", "pw"));
  assert.equal(dev.name, "dev");
  assert.equal(codeOf(() => policy.authorize(dev, "main", "execute")), "ok");
  assert.equal(codeOf(() => policy.authorize(dev, "", "execute")), Code.PermissionDenied);
  assert.equal(codeOf(() => policy.authorize(dev, "other", "read")), Code.PermissionDenied);

  const robot = policy.identify(new Headers(), { clientCertSubjectCN: "robot.example" });
  assert.equal(robot.name, "robot");
  assert.equal(codeOf(() => policy.authorize(robot, "x", "execute")), "ok");

  const anon = policy.identify(new Headers(), { clientCertSubjectCN: "stranger" });
  assert.ok(anon.anonymous);
  assert.equal(codeOf(() => policy.authorize(anon, "", "read")), "ok");
  assert.equal(codeOf(() => policy.authorize(anon, "", "write_ac")), Code.Unauthenticated);

  const internal = policy.identify(bearer("internal-token"));
  assert.equal(codeOf(() => policy.authorize(internal, "main", "write_ac")), "ok");
});

Deno.test("AuthPolicy: unknown or malformed credentials are UNAUTHENTICATED, never anonymous", () => {
  assert.equal(codeOf(() => policy.identify(bearer("nope"))), Code.Unauthenticated);
  assert.equal(codeOf(() => policy.identify(basic("dev", "wrong"))), Code.Unauthenticated);
  assert.equal(codeOf(() => policy.identify(basic("ci", "ci-token"))), Code.Unauthenticated);
  assert.equal(
    codeOf(() => policy.identify(new Headers({ authorization: "Digest abc" }))),
    Code.Unauthenticated,
  );
  assert.equal(
    codeOf(() => policy.identify(new Headers({ authorization: "Basic !!!" }))),
    Code.Unauthenticated,
  );
});

Deno.test("AuthPolicy: a request naming no clear instance needs the permission everywhere", () => {
  const dev = policy.identify(basic("dev", "pw"));
  assert.equal(codeOf(() => policy.authorize(dev, undefined, "read")), Code.PermissionDenied);
  const ci = policy.identify(bearer("ci-token"));
  assert.equal(codeOf(() => policy.authorize(ci, undefined, "read")), "ok");
  assert.equal(new AuthPolicy({ anonymous: "full", users: [] }).open, true);
  assert.equal(policy.open, false);
});

Deno.test("guard: every REAPI method maps to its permission; requests name their instance", () => {
  const reapi = "build.bazel.remote.execution.v2";
  assert.equal(permissionOf(`${reapi}.ActionCache`, "UpdateActionResult"), "write_ac");
  assert.equal(permissionOf(`${reapi}.ActionCache`, "GetActionResult"), "read");
  assert.equal(permissionOf(`${reapi}.ContentAddressableStorage`, "BatchUpdateBlobs"), "write_cas");
  assert.equal(permissionOf("google.bytestream.ByteStream", "Write"), "write_cas");
  assert.equal(permissionOf(`${reapi}.Execution`, "WaitExecution"), "execute");
  assert.equal(permissionOf("google.longrunning.Operations", "GetOperation"), "execute");
  assert.equal(permissionOf("some.Other", "Method"), undefined);
  const h = "a".repeat(64);
  assert.equal(instanceOfRequest({ instanceName: "main" }), "main");
  assert.equal(instanceOfRequest({ resourceName: `team/a/blobs/${h}/5` }), "team/a");
  assert.equal(instanceOfRequest({ resourceName: `uploads/${crypto.randomUUID()}/blobs/${h}/5` }), "");
  assert.equal(instanceOfRequest({ name: "main/operations/x" }), "main");
  assert.equal(instanceOfRequest({ resourceName: "garbage" }), undefined);
});

Deno.test("Worker authenticator: only a bearer worker token passes", () => {
  const check = createWorkerAuthenticator(["0123456789abcdef-worker"]);
  assert.equal(codeOf(() => check(bearer("0123456789abcdef-worker"))), "ok");
  assert.equal(codeOf(() => check(new Headers())), Code.Unauthenticated);
  assert.equal(codeOf(() => check(bearer("0123456789abcdef-other"))), Code.Unauthenticated);
  assert.equal(codeOf(() => check(basic("w", "0123456789abcdef-worker"))), Code.Unauthenticated);
});
