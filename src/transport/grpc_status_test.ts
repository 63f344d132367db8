import assert from "node:assert/strict";
import { create, fromBinary } from "@bufbuild/protobuf";
import { Code as ConnectCode, ConnectError } from "@connectrpc/connect";
import { PreconditionFailureSchema } from "../gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../gen/google/rpc/status_pb.ts";
import { CairnError, Code, errors } from "../util/error.ts";
import { percentEncode, statusTrailers, toConnectError } from "./grpc_status.ts";

Deno.test("a CairnError keeps its code and message; details travel as google.rpc.Status", () => {
  const t = statusTrailers(
    new CairnError(Code.FailedPrecondition, "Missing blobs", {
      details: [{
        typeName: "google.rpc.PreconditionFailure",
        value: create(PreconditionFailureSchema, { violations: [{ type: "MISSING", subject: "blobs/x/1" }] }),
      }],
    }),
  );
  assert.equal(t["grpc-status"], "9");
  assert.equal(t["grpc-message"], "Missing blobs");
  const status = fromBinary(StatusSchema, Buffer.from(t["grpc-status-details-bin"]!, "base64"));
  assert.equal(status.code, 9);
  assert.equal(
    fromBinary(PreconditionFailureSchema, status.details[0]!.value).violations[0]?.subject,
    "blobs/x/1",
  );
});

Deno.test("ConnectError keeps its code; anything else is INTERNAL (or CairnError.from's mapping)", () => {
  assert.equal(statusTrailers(new ConnectError("nope", ConnectCode.PermissionDenied))["grpc-status"], "7");
  assert.equal(
    statusTrailers(new ConnectError("nope", ConnectCode.PermissionDenied))["grpc-message"],
    "nope",
  );
  assert.equal(statusTrailers(new Error("boom"))["grpc-status"], "13");
  assert.equal(statusTrailers("weird")["grpc-status"], "13");
  assert.equal(
    statusTrailers(new CairnError(Code.NotFound, "x", { details: [{ typeName: "no.Such", value: {} }] }))[
      "grpc-status-details-bin"
    ],
    undefined,
  );
});

Deno.test("toConnectError carries code and details for connect", () => {
  const e = toConnectError(errors.notFound("gone"));
  assert.equal(e.code, ConnectCode.NotFound);
  assert.equal(e.rawMessage, "gone");
  const withDetail = toConnectError(
    new CairnError(Code.FailedPrecondition, "m", {
      details: [{ typeName: "google.rpc.PreconditionFailure", value: create(PreconditionFailureSchema, {}) }],
    }),
  );
  assert.equal(withDetail.findDetails(PreconditionFailureSchema).length, 1);
});

Deno.test("grpc-message percent-encoding", () => {
  assert.equal(percentEncode("plain text: ok"), "plain text: ok");
  assert.equal(percentEncode("100% sure"), "100%25 sure");
  assert.equal(percentEncode("line\nbreak é"), "line%0Abreak %C3%A9");
  assert.equal(decodeURIComponent(percentEncode("naïve 🌲")), "naïve 🌲");
});
