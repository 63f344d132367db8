import assert from "node:assert/strict";
import { CairnError, Code } from "../util/error.ts";
import { DEFAULT_RETRY_CODES, parseCodeName, Retrier } from "./retry.ts";

Deno.test("Retrier.retriable: retried codes only, never NOT_FOUND, within max_retries, not once aborted", () => {
  const retrier = new Retrier({
    maxRetries: 2,
    delay: 0,
    jitter: 0,
    codes: new Set([Code.Unavailable, Code.NotFound]),
  });
  const unavailable = new CairnError(Code.Unavailable, "down");
  assert.equal(retrier.retriable(unavailable, 0), true);
  assert.equal(retrier.retriable(unavailable, 1), true);
  assert.equal(retrier.retriable(unavailable, 2), false, "max_retries reached");
  assert.equal(retrier.retriable(new CairnError(Code.NotFound, "gone"), 0), false, "NOT_FOUND never");
  assert.equal(retrier.retriable(new CairnError(Code.Internal, "bug"), 0), false, "a code not listed");
  assert.equal(retrier.retriable(new Error("plain"), 0), false, "not a CairnError");
  assert.equal(retrier.retriable(unavailable, 0, AbortSignal.abort()), false, "aborted");
});

Deno.test("Retrier.run retries a transient failure, then gives up with the last error", async () => {
  const retrier = new Retrier({ maxRetries: 2, delay: 0, jitter: 0, codes: new Set(DEFAULT_RETRY_CODES) });
  let calls = 0;
  assert.equal(
    await retrier.run(() =>
      ++calls < 3 ? Promise.reject(new CairnError(Code.Unavailable, "down")) : Promise.resolve(calls)
    ),
    3,
  );
  calls = 0;
  await assert.rejects(
    retrier.run(() => {
      calls++;
      return Promise.reject(new CairnError(Code.Unavailable, `down ${calls}`));
    }),
    (err: unknown) =>
      err instanceof CairnError && err.code === Code.Unavailable && err.message.includes("down 3"),
  );
  assert.equal(calls, 3, "one attempt and two retries");
});

Deno.test("parseCodeName reads the spellings configs use", () => {
  assert.equal(parseCodeName("UNAVAILABLE"), Code.Unavailable);
  assert.equal(parseCodeName("DeadlineExceeded"), Code.DeadlineExceeded);
  assert.equal(parseCodeName("resource_exhausted"), Code.ResourceExhausted);
  assert.equal(parseCodeName("Canceled"), Code.Cancelled);
  assert.equal(parseCodeName("no such code"), undefined);
});
