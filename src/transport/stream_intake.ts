/**
 * Fair intake of new HTTP/2 streams: at most `perTurn` start in one turn of the event loop; the rest wait in a
 * queue per connection and start in later turns, one connection after another (round-robin).
 *
 * Why: node:http2 emits every stream of a socket read in one go. A client that opens 2,000 streams at once
 * would otherwise have all 2,000 started (decoded, admitted, a file opened for each upload) before any other
 * connection's request is even looked at. With the intake, the event loop gets back to I/O after each
 * `perTurn` streams, and a connection with one stream waits behind at most one stream of each other
 * connection, not behind all of them.
 *
 * A queued task still runs when its turn comes; it checks for itself whether its stream is still worth
 * starting (a reset stream is not).
 *
 * @example
 * ```ts
 * import { createStreamIntake } from "./stream_intake.ts";
 * const intake = createStreamIntake(2);
 * const ran: string[] = [];
 * const a = {}, b = {};
 * for (const n of ["a1", "a2", "a3"]) intake.admit(a, () => ran.push(n));
 * intake.admit(b, () => ran.push("b1"));
 * // a1 and a2 ran at once; a3 and b1 wait for the next turn.
 * await new Promise((r) => setImmediate(r));
 * console.assert(ran.join() === "a1,a2,a3,b1");
 * ```
 * @module
 */

/** The intake of one server. */
export interface StreamIntake {
  /** Runs `task` now if this turn has room and nothing waits, else queues it behind `connection`'s earlier ones. */
  admit(connection: object, task: () => void): void;
  /** Tasks waiting for a turn. */
  readonly queued: number;
  /** Drops every waiting task (the server is closing). */
  clear(): void;
}

/** Creates an intake that starts at most `perTurn` tasks per event-loop turn (`perTurn` ≥ 1). */
export function createStreamIntake(
  perTurn: number,
  onError: (err: unknown) => void = () => {},
): StreamIntake {
  if (!(perTurn >= 1)) throw new RangeError(`perTurn must be at least 1, got ${perTurn}`);
  /** Waiting tasks per connection, in arrival order of the connections' first waiting task. */
  const waiting = new Map<object, (() => void)[]>();
  let queued = 0;
  let startedThisTurn = 0;
  let turnScheduled = false;

  const run = (task: () => void) => {
    startedThisTurn++;
    try {
      task();
    } catch (err) {
      onError(err);
    }
  };
  const nextTurn = () => {
    turnScheduled = false;
    startedThisTurn = 0;
    // Round-robin: a connection served moves to the back (a Map iterates entries re-added meanwhile too), so
    // each pass takes one task per connection, and the next turn starts with those not served in this one.
    for (const [connection, tasks] of waiting) {
      if (startedThisTurn >= perTurn) break;
      const task = tasks.shift()!;
      queued--;
      waiting.delete(connection);
      if (tasks.length > 0) waiting.set(connection, tasks);
      run(task);
    }
    if (queued > 0 || startedThisTurn > 0) schedule();
  };
  const schedule = () => {
    if (turnScheduled) return;
    turnScheduled = true;
    setImmediate(nextTurn);
  };

  return {
    admit(connection, task) {
      if (queued === 0 && startedThisTurn < perTurn) {
        schedule(); // the turn's count is reset after this turn's I/O
        run(task);
        return;
      }
      const tasks = waiting.get(connection);
      if (tasks === undefined) waiting.set(connection, [task]);
      else tasks.push(task);
      queued++;
      schedule();
    },
    get queued() {
      return queued;
    },
    clear() {
      waiting.clear();
      queued = 0;
    },
  };
}
