import assert from "node:assert/strict";
import { createStreamIntake } from "./stream_intake.ts";

const nextTurn = () => new Promise<void>((r) => setImmediate(r));

Deno.test("stream intake: at most perTurn start per turn, the rest round-robin over connections", async () => {
  const intake = createStreamIntake(4);
  const ran: string[] = [];
  const flood = {}, quiet = {};
  for (let i = 0; i < 20; i++) intake.admit(flood, () => ran.push(`f${i}`));
  assert.deepEqual(ran.length, 4);
  assert.deepEqual(intake.queued, 16);
  // A quiet connection's one stream waits behind at most one of the flood's per pass, not behind all 16.
  intake.admit(quiet, () => ran.push("q"));
  await nextTurn();
  assert.deepEqual(ran.length, 8);
  assert(ran.slice(4, 8).includes("q"), `the quiet stream started in the first turn after it came: ${ran}`);
  while (intake.queued > 0) await nextTurn();
  assert.deepEqual(ran.filter((n) => n.startsWith("f")), [...Array(20)].map((_, i) => `f${i}`));
});

Deno.test("stream intake: a throwing task is reported and the others still run", async () => {
  const errors: unknown[] = [];
  const intake = createStreamIntake(1, (e) => errors.push(e));
  const ran: number[] = [];
  const c = {};
  intake.admit(c, () => {
    throw new Error("boom");
  });
  intake.admit(c, () => ran.push(2));
  intake.admit(c, () => ran.push(3));
  while (intake.queued > 0) await nextTurn();
  assert.deepEqual(ran, [2, 3]);
  assert.deepEqual(errors.length, 1);
  assert.deepEqual((errors[0] as Error).message, "boom");
});

Deno.test("stream intake: clear drops waiting tasks; bad perTurn is refused", async () => {
  const intake = createStreamIntake(1);
  const ran: number[] = [];
  const c = {};
  for (let i = 0; i < 5; i++) intake.admit(c, () => ran.push(i));
  intake.clear();
  await nextTurn();
  await nextTurn();
  assert.deepEqual(ran, [0]);
  let threw: unknown;
  try {
    createStreamIntake(0);
  } catch (e) {
    threw = e;
  }
  assert(threw instanceof RangeError);
});
