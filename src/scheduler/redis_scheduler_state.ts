/**
 * The shared state of the `simple` scheduler's Redis backend (`experimental_backend: { redis: { redis_store }
 * }`): every transition of an action is one Lua script, so replicas sharing a Redis server never see (or
 * make) a half-done change.
 *
 * Keys, under `{key_prefix of the redis store}sched/{scheduler name}/`:
 * - `a/{id}` hash, one per action: `req` (the request, JSON), `stage` (`q` queued, `x` executing, `d` done),
 *   `prio`, `seq`, `queuedAt`, `attempts`, `worker` (the worker running it), `lastWorker`, `meta` (partial
 *   ExecutedActionMetadata, base64), `resp` (the ExecuteResponse once done, base64), `key` (its merge key),
 *   `clientSeen` (last time a client asked about it), `unmatched` (since when no worker could run it).
 * - `o/{operation name}` hash: `a` (its action id) and, for a cancelled operation, its own `resp`.
 * - `c/{id}` set: the operations still waiting for an action (a cancelled one leaves it).
 * - `k/{merge key}`: the in-flight action of an instance + digest function + action digest (dedup).
 * - `q` sorted set: queued action ids, by priority (higher first) then age.
 * - `x` set: executing action ids; `l/{id}`: the lease of an executing action (value: the worker id) with
 *   a PX expiry, renewed by the replica the worker is connected to. An executing action whose lease is gone
 *   is requeued (or re-adopted by its worker when it reconnects first).
 * - `active` set: unfinished actions; `w` hash: worker id → `{ r: replica, p: properties, s: last seen,
 *   g: going away }`.
 * - `sweeper`: which replica runs the global sweeps (a lock with PX expiry).
 * - channel `ev`: `q` (the queue changed), `a:{id}` (an action or one of its operations changed),
 *   `k:{id}:{worker}` (kill that action on that worker).
 * Done actions and their operations expire after `retain_completed_for_s`.
 *
 * @example
 * ```ts ignore
 * import { RedisSchedulerState } from "./redis_scheduler_state.ts";
 * const state = new RedisSchedulerState(redisStore.newConnection(), "sched/MAIN/");
 * const { id, merged } = await state.add({ op: "operations/1", id: "operations/1", key: "", req: "{}", prio: 0 });
 * ```
 * @module
 */
import type { Redis } from "ioredis";
import { CairnError, Code } from "../util/error.ts";

/** Priorities beyond ±1e6 sort as ±1e6 (so the queue score stays an exact integer). */
const LUA_SCORE = `
local function score(prio, seq)
  local p = math.max(-1000000, math.min(1000000, tonumber(prio)))
  return string.format('%.0f', -p * 1000000000 + tonumber(seq))
end
`;

/** Marks action `id` done with response `resp`; its operations expire after `retain` ms. */
const LUA_FINISH = `
local function finish(p, id, resp, retain)
  local ak = p .. 'a/' .. id
  local key = redis.call('HGET', ak, 'key')
  redis.call('HSET', ak, 'stage', 'd', 'resp', resp)
  redis.call('HDEL', ak, 'worker')
  redis.call('DEL', p .. 'l/' .. id)
  redis.call('SREM', p .. 'x', id)
  redis.call('ZREM', p .. 'q', id)
  redis.call('SREM', p .. 'active', id)
  if key and key ~= '' and redis.call('GET', p .. 'k/' .. key) == id then redis.call('DEL', p .. 'k/' .. key) end
  for _, op in ipairs(redis.call('SMEMBERS', p .. 'c/' .. id)) do
    redis.call('PEXPIRE', p .. 'o/' .. op, retain)
  end
  redis.call('DEL', p .. 'c/' .. id)
  redis.call('PEXPIRE', ak, retain)
  redis.call('PUBLISH', p .. 'ev', 'a:' .. id)
end
`;

// ARGV: p, op, newId, key, req, prio, now
const LUA_ADD = LUA_SCORE + `
local p = ARGV[1]
local opk = p .. 'o/' .. ARGV[2]
if redis.call('EXISTS', opk) == 1 then return {'', 0} end
local id = false
if ARGV[4] ~= '' then
  id = redis.call('GET', p .. 'k/' .. ARGV[4])
  if id then
    local st = redis.call('HGET', p .. 'a/' .. id, 'stage')
    if st ~= 'q' and st ~= 'x' then id = false end
  end
end
local merged = 0
if id then
  merged = 1
  local ak = p .. 'a/' .. id
  if tonumber(ARGV[6]) > tonumber(redis.call('HGET', ak, 'prio')) then
    redis.call('HSET', ak, 'prio', ARGV[6])
    if redis.call('HGET', ak, 'stage') == 'q' then
      redis.call('ZADD', p .. 'q', score(ARGV[6], redis.call('HGET', ak, 'seq')), id)
    end
  end
else
  id = ARGV[3]
  local seq = redis.call('INCR', p .. 'seq')
  redis.call('HSET', p .. 'a/' .. id, 'req', ARGV[5], 'stage', 'q', 'prio', ARGV[6], 'seq', seq,
    'queuedAt', ARGV[7], 'attempts', 0, 'key', ARGV[4])
  redis.call('ZADD', p .. 'q', score(ARGV[6], seq), id)
  redis.call('SADD', p .. 'active', id)
  if ARGV[4] ~= '' then redis.call('SET', p .. 'k/' .. ARGV[4], id) end
end
redis.call('HSET', opk, 'a', id)
redis.call('SADD', p .. 'c/' .. id, ARGV[2])
redis.call('HSET', p .. 'a/' .. id, 'clientSeen', ARGV[7])
redis.call('PUBLISH', p .. 'ev', 'q')
return {id, merged}
`;

// ARGV: p, id, worker, leaseMs
const LUA_CLAIM = `
local p, id = ARGV[1], ARGV[2]
local ak = p .. 'a/' .. id
if redis.call('HGET', ak, 'stage') ~= 'q' then return 0 end
if redis.call('ZREM', p .. 'q', id) == 0 then return 0 end
redis.call('HSET', ak, 'stage', 'x', 'worker', ARGV[3], 'lastWorker', ARGV[3])
redis.call('HDEL', ak, 'meta', 'unmatched')
redis.call('SET', p .. 'l/' .. id, ARGV[3], 'PX', ARGV[4])
redis.call('SADD', p .. 'x', id)
redis.call('PUBLISH', p .. 'ev', 'a:' .. id)
return 1
`;

// ARGV: p, id, previous worker, new worker, leaseMs
const LUA_ADOPT = `
local p, id = ARGV[1], ARGV[2]
local ak = p .. 'a/' .. id
local st = redis.call('HGET', ak, 'stage')
if st == 'x' and redis.call('HGET', ak, 'worker') == ARGV[3] then
  -- running on it already
elseif st == 'q' and redis.call('HGET', ak, 'lastWorker') == ARGV[3] then
  redis.call('ZREM', p .. 'q', id)
  redis.call('HSET', ak, 'stage', 'x')
  redis.call('SADD', p .. 'x', id)
else
  return 0
end
redis.call('HSET', ak, 'worker', ARGV[4], 'lastWorker', ARGV[4])
redis.call('SET', p .. 'l/' .. id, ARGV[4], 'PX', ARGV[5])
redis.call('PUBLISH', p .. 'ev', 'a:' .. id)
return 1
`;

// ARGV: p, worker, leaseMs, ids... Returns the ids the worker does not hold any more.
const LUA_RENEW = `
local p, w = ARGV[1], ARGV[2]
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local ak = p .. 'a/' .. id
  if redis.call('HGET', ak, 'stage') == 'x' and redis.call('HGET', ak, 'worker') == w then
    redis.call('SET', p .. 'l/' .. id, w, 'PX', ARGV[3])
  else
    lost[#lost + 1] = id
  end
end
return lost
`;

// ARGV: p, id, worker, resp, retain, meta ('' none). 1: done; 0: the worker does not hold the action.
const LUA_COMPLETE = LUA_FINISH + `
local p, id = ARGV[1], ARGV[2]
local ak = p .. 'a/' .. id
if redis.call('HGET', ak, 'stage') ~= 'x' or redis.call('HGET', ak, 'worker') ~= ARGV[3] then return 0 end
finish(p, id, ARGV[4], ARGV[5])
return 1
`;

// ARGV: p, id, worker ('' = only when the lease is gone), counted (0/1), maxRetries, failResp, retain.
// 0: not requeued (not executing, or held by another worker / lease alive); 1: requeued; 2: failed for good.
const LUA_REQUEUE = LUA_SCORE + LUA_FINISH + `
local p, id = ARGV[1], ARGV[2]
local ak = p .. 'a/' .. id
if redis.call('HGET', ak, 'stage') ~= 'x' then return 0 end
if ARGV[3] == '' then
  if redis.call('EXISTS', p .. 'l/' .. id) == 1 then return 0 end
elseif redis.call('HGET', ak, 'worker') ~= ARGV[3] then
  return 0
end
local attempts = redis.call('HINCRBY', ak, 'attempts', tonumber(ARGV[4]))
if attempts > tonumber(ARGV[5]) then
  finish(p, id, ARGV[6], ARGV[7])
  return 2
end
redis.call('HSET', ak, 'stage', 'q')
redis.call('HDEL', ak, 'worker', 'meta')
redis.call('DEL', p .. 'l/' .. id)
redis.call('SREM', p .. 'x', id)
redis.call('ZADD', p .. 'q', score(redis.call('HGET', ak, 'prio'), redis.call('HGET', ak, 'seq')), id)
redis.call('PUBLISH', p .. 'ev', 'a:' .. id)
redis.call('PUBLISH', p .. 'ev', 'q')
return 1
`;

// ARGV: p, id, resp, retain. Returns the worker it ran on ('' none), or false when already done.
const LUA_ABANDON = LUA_FINISH + `
local p, id = ARGV[1], ARGV[2]
local ak = p .. 'a/' .. id
local st = redis.call('HGET', ak, 'stage')
if st ~= 'q' and st ~= 'x' then return false end
local w = redis.call('HGET', ak, 'worker') or ''
finish(p, id, ARGV[3], ARGV[4])
if w ~= '' then redis.call('PUBLISH', p .. 'ev', 'k:' .. id .. ':' .. w) end
return w
`;

// ARGV: p, op, resp, retain, abandonResp. 0: unknown or done; 1: cancelled.
const LUA_CANCEL = LUA_FINISH + `
local p, op = ARGV[1], ARGV[2]
local opk = p .. 'o/' .. op
local id = redis.call('HGET', opk, 'a')
if not id then return 0 end
if redis.call('SREM', p .. 'c/' .. id, op) == 0 then return 0 end
redis.call('HSET', opk, 'resp', ARGV[3])
redis.call('PEXPIRE', opk, ARGV[4])
if redis.call('SCARD', p .. 'c/' .. id) == 0 then
  local ak = p .. 'a/' .. id
  local w = redis.call('HGET', ak, 'worker') or ''
  finish(p, id, ARGV[5], ARGV[4])
  if w ~= '' then redis.call('PUBLISH', p .. 'ev', 'k:' .. id .. ':' .. w) end
else
  redis.call('PUBLISH', p .. 'ev', 'a:' .. id)
end
return 1
`;

// ARGV: p, op. Forgets an operation (its action keeps running for other clients).
const LUA_DELETE = `
local p, op = ARGV[1], ARGV[2]
local opk = p .. 'o/' .. op
local id = redis.call('HGET', opk, 'a')
if not id then return 0 end
redis.call('DEL', opk)
redis.call('SREM', p .. 'c/' .. id, op)
return 1
`;

// ARGV: p, now, ids... Records that clients listen (never recreating an action that is gone).
const LUA_TOUCH = `
for i = 3, #ARGV do
  local ak = ARGV[1] .. 'a/' .. ARGV[i]
  if redis.call('EXISTS', ak) == 1 then redis.call('HSET', ak, 'clientSeen', ARGV[2]) end
end
return 0
`;

/** One action's fields as read from Redis. */
export interface StoredAction {
  readonly id: string;
  readonly req: string;
  readonly stage: "q" | "x" | "d";
  readonly queuedAt: number;
  readonly attempts: number;
  readonly worker: string | undefined;
  readonly meta: string | undefined;
  readonly resp: string | undefined;
  readonly clientSeen: number;
  readonly unmatched: number | undefined;
}

/** A worker as registered by the replica it is connected to. */
export interface StoredWorker {
  readonly id: string;
  readonly replica: string;
  readonly properties: { name: string; value: string }[];
  readonly seen: number;
  /** It said GoingAway: takes no new work. */
  readonly draining: boolean;
}

type Scripts = Record<string, (...args: (string | number)[]) => Promise<unknown>>;

/** Typed access to the Redis scheduler state; every method throws UNAVAILABLE when Redis cannot answer. */
export class RedisSchedulerState {
  readonly #redis: Redis;
  readonly #cmd: Scripts;
  readonly #p: string;
  readonly #where: string;

  /** `redis`: a connection owned by this object; `prefix`: the key prefix (ends with `/`). */
  constructor(redis: Redis, prefix: string, where = "Redis") {
    this.#redis = redis;
    this.#cmd = redis as unknown as Scripts;
    this.#p = prefix;
    this.#where = where;
    const scripts: Record<string, string> = {
      schedAdd: LUA_ADD,
      schedClaim: LUA_CLAIM,
      schedAdopt: LUA_ADOPT,
      schedRenew: LUA_RENEW,
      schedComplete: LUA_COMPLETE,
      schedRequeue: LUA_REQUEUE,
      schedAbandon: LUA_ABANDON,
      schedCancel: LUA_CANCEL,
      schedDelete: LUA_DELETE,
      schedTouch: LUA_TOUCH,
    };
    for (const [name, lua] of Object.entries(scripts)) redis.defineCommand(name, { numberOfKeys: 0, lua });
  }

  /** The pub/sub channel of state changes. */
  get channel(): string {
    return `${this.#p}ev`;
  }

  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const r = this.#redis;
    if (r.status === "wait") r.connect().catch(() => {});
    try {
      return await fn();
    } catch (err) {
      throw new CairnError(
        Code.Unavailable,
        `Scheduler state: cannot ${what} in ${this.#where}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** Adds an operation, merged into the in-flight action of `key` when there is one. `id: ""`: the name exists. */
  async add(
    a: { op: string; id: string; key: string; req: string; prio: number; now: number },
  ): Promise<{ id: string; merged: boolean }> {
    const r = await this.#call(
      "add an operation",
      () => this.#cmd.schedAdd!(this.#p, a.op, a.id, a.key, a.req, a.prio, a.now),
    ) as [string, number];
    return { id: r[0], merged: r[1] === 1 };
  }

  /** Assigns a queued action to a worker; false when another replica took it first. */
  async claim(id: string, worker: string, leaseMs: number): Promise<boolean> {
    return await this.#call("claim an action", () => this.#cmd.schedClaim!(this.#p, id, worker, leaseMs)) ===
      1;
  }

  /** Gives an action its reconnected worker's new id; false when the worker no longer holds it. */
  async adopt(id: string, previous: string, worker: string, leaseMs: number): Promise<boolean> {
    return await this.#call(
      "re-adopt an action",
      () => this.#cmd.schedAdopt!(this.#p, id, previous, worker, leaseMs),
    ) === 1;
  }

  /** Renews the leases of a worker's actions; returns the ids it no longer holds. */
  async renew(worker: string, ids: readonly string[], leaseMs: number): Promise<string[]> {
    if (ids.length === 0) return [];
    return await this.#call(
      "renew leases",
      () => this.#cmd.schedRenew!(this.#p, worker, leaseMs, ...ids),
    ) as string[];
  }

  /** Completes an action run by `worker`; false when that worker does not hold it (the result is dropped). */
  async complete(id: string, worker: string, resp: string, retainMs: number): Promise<boolean> {
    return await this.#call(
      "complete an action",
      () => this.#cmd.schedComplete!(this.#p, id, worker, resp, retainMs),
    ) === 1;
  }

  /**
   * Requeues an action after a failed attempt on `worker` (`""`: only when its lease has expired). Returns
   * 0 (not requeued), 1 (requeued) or 2 (failed for good with `failResp`).
   */
  async requeue(
    id: string,
    worker: string,
    counted: boolean,
    maxRetries: number,
    failResp: string,
    retainMs: number,
  ): Promise<0 | 1 | 2> {
    return await this.#call(
      "requeue an action",
      () => this.#cmd.schedRequeue!(this.#p, id, worker, counted ? 1 : 0, maxRetries, failResp, retainMs),
    ) as 0 | 1 | 2;
  }

  /** Ends an unfinished action with `resp`; returns the worker it was on (`""`), or undefined when done. */
  async abandon(id: string, resp: string, retainMs: number): Promise<string | undefined> {
    const w = await this.#call(
      "abandon an action",
      () => this.#cmd.schedAbandon!(this.#p, id, resp, retainMs),
    ) as string | null;
    return w ?? undefined;
  }

  /** Cancels one operation (its action too when no other operation waits for it). */
  async cancel(op: string, resp: string, abandonResp: string, retainMs: number): Promise<boolean> {
    return await this.#call(
      "cancel an operation",
      () => this.#cmd.schedCancel!(this.#p, op, resp, retainMs, abandonResp),
    ) === 1;
  }

  /** Forgets an operation; false when unknown. */
  async deleteOp(op: string): Promise<boolean> {
    return await this.#call("delete an operation", () => this.#cmd.schedDelete!(this.#p, op)) === 1;
  }

  /** The operation's action id and its own response (a cancelled operation), or undefined when unknown. */
  async op(op: string): Promise<{ id: string; resp: string | undefined } | undefined> {
    const [id, resp] = await this.#call(
      "read an operation",
      () => this.#redis.hmget(`${this.#p}o/${op}`, "a", "resp"),
    );
    return id ? { id, resp: resp ?? undefined } : undefined;
  }

  /** An action's fields, or undefined when gone. */
  async action(id: string): Promise<StoredAction | undefined> {
    const f = await this.#call(
      "read an action",
      () =>
        this.#redis.hmget(
          `${this.#p}a/${id}`,
          "req",
          "stage",
          "queuedAt",
          "attempts",
          "worker",
          "meta",
          "resp",
          "clientSeen",
          "unmatched",
        ),
    );
    const [req, stage, queuedAt, attempts, worker, meta, resp, clientSeen, unmatched] = f;
    if (!req || (stage !== "q" && stage !== "x" && stage !== "d")) return undefined;
    return {
      id,
      req,
      stage,
      queuedAt: Number(queuedAt),
      attempts: Number(attempts),
      worker: worker ?? undefined,
      meta: meta ?? undefined,
      resp: resp ?? undefined,
      clientSeen: Number(clientSeen ?? 0),
      unmatched: unmatched ? Number(unmatched) : undefined,
    };
  }

  /** The operation names still waiting for an action. */
  async clientsOf(id: string): Promise<string[]> {
    return await this.#call("read an action's operations", () => this.#redis.smembers(`${this.#p}c/${id}`));
  }

  /** Up to `n` queued action ids, first to run first. */
  async queued(n: number): Promise<string[]> {
    return await this.#call("read the queue", () => this.#redis.zrange(`${this.#p}q`, "0", String(n - 1)));
  }

  /** Unfinished action ids. */
  async active(): Promise<string[]> {
    return await this.#call("list actions", () => this.#redis.smembers(`${this.#p}active`));
  }

  /** Executing action ids whose lease is gone. */
  async leaseless(): Promise<string[]> {
    const ids = await this.#call("list executing actions", () => this.#redis.smembers(`${this.#p}x`));
    if (ids.length === 0) return [];
    const exists = await this.#call("read leases", async () => {
      const pipe = this.#redis.pipeline();
      for (const id of ids) pipe.exists(`${this.#p}l/${id}`);
      return (await pipe.exec()) ?? [];
    });
    return ids.filter((_, i) => exists[i]?.[1] === 0);
  }

  /** Records that clients still listen to these actions. */
  async touch(ids: readonly string[], now: number): Promise<void> {
    if (ids.length === 0) return;
    await this.#call("touch actions", () => this.#cmd.schedTouch!(this.#p, now, ...ids));
  }

  /** Stores partial execution metadata of an executing action (only while `worker` holds it). */
  async progress(id: string, worker: string, meta: string): Promise<void> {
    await this.#call("record progress", async () => {
      // Not fenced by a script: metadata is informational and overwritten by the next claim.
      const w = await this.#redis.hget(`${this.#p}a/${id}`, "worker");
      if (w !== worker) return;
      await this.#redis.hset(`${this.#p}a/${id}`, "meta", meta);
      await this.#redis.publish(this.channel, `a:${id}`);
    });
  }

  /** Sets (or clears, with undefined) since when no worker could run a queued action. */
  async setUnmatched(id: string, since: number | undefined): Promise<void> {
    await this.#call(
      "mark an action",
      () =>
        since === undefined
          ? this.#redis.hdel(`${this.#p}a/${id}`, "unmatched")
          : this.#redis.hset(`${this.#p}a/${id}`, "unmatched", since),
    );
  }

  /** Registers or refreshes workers of one replica. */
  async putWorkers(workers: readonly StoredWorker[]): Promise<void> {
    if (workers.length === 0) return;
    await this.#call("register workers", () =>
      this.#redis.hset(
        `${this.#p}w`,
        Object.fromEntries(
          workers.map((w) => [
            w.id,
            JSON.stringify({ r: w.replica, p: w.properties, s: w.seen, g: w.draining }),
          ]),
        ),
      ));
  }

  /** Removes workers from the registry. */
  async removeWorkers(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#call("unregister workers", () => this.#redis.hdel(`${this.#p}w`, ...ids));
  }

  /** Every registered worker. */
  async workers(): Promise<StoredWorker[]> {
    const all = await this.#call("list workers", () => this.#redis.hgetall(`${this.#p}w`));
    const out: StoredWorker[] = [];
    for (const [id, text] of Object.entries(all)) {
      try {
        const v = JSON.parse(text) as {
          r: string;
          p: { name: string; value: string }[];
          s: number;
          g?: boolean;
        };
        out.push({ id, replica: v.r, properties: v.p, seen: v.s, draining: v.g === true });
      } catch {
        // A malformed entry is ignored (and expires as stale).
      }
    }
    return out;
  }

  /** Takes or keeps the sweeper lock for `ms`; true when this replica holds it. */
  async sweeperLock(replica: string, ms: number): Promise<boolean> {
    return await this.#call("take the sweeper lock", async () => {
      const key = `${this.#p}sweeper`;
      if (await this.#redis.set(key, replica, "PX", ms, "NX") === "OK") return true;
      if (await this.#redis.get(key) !== replica) return false;
      await this.#redis.pexpire(key, ms);
      return true;
    });
  }

  /** Publishes a state change to every replica. */
  async publish(message: string): Promise<void> {
    await this.#call("publish", () => this.#redis.publish(this.channel, message));
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    const r = this.#redis;
    await (r.status === "ready"
      ? r.quit().then(() => {}, () => r.disconnect())
      : Promise.resolve(r.disconnect()));
  }
}
