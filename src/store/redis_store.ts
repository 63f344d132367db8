/**
 * `redis_store`: values kept in a Redis server (on `ioredis`), streamed in chunks, never held whole.
 *
 * Layout under `key_prefix`, at `{prefix}{name}` (name from `backendKeyName`: `hash-size`, `ac/hash-size`,
 * `str/text`): a value of at most one chunk (1 MiB, or `read_chunk_size` if larger) is a plain string there,
 * read by one GET (the very command of a bare client); a larger value's **manifest** is a hash there with
 * `size`, `chunks`, `id` and `csize` (the chunk size it was written with). A larger value is written chunk by chunk under temporary keys
 * `{prefix}tmp/{id}/{n}` (with a one-hour TTL, so a crashed upload cleans itself up), at most
 * `max_chunk_uploads_per_update` in flight; once the whole stream is in and its size checked, one Lua script
 * checks the temporary chunks add up to the size, renames them to `{prefix}chunk/{id}/{n}`, drops the TTL,
 * deletes the chunks of the value it replaces and writes the manifest — atomically, so a crash or an abort
 * mid-write never exposes a partial value.
 *
 * Redis may evict any key under `maxmemory-policy allkeys-lru`. Every open and every `hasMany` checks, in
 * one script, that the chunks the manifest lists all exist and add up to its size; a value missing a chunk
 * is deleted and reported absent (NOT_FOUND), and a chunk that disappears while it is being streamed errors
 * the stream instead of serving short data. Ranged reads fetch only the chunks they need (GETRANGE).
 *
 * `mode: "cluster"` (a Redis Cluster) puts the value's name in a hash tag, `{prefix}{{name}}` and
 * `{prefix}chunk/{{name}}/…`, so every key of one value shares one slot and every script touches one slot;
 * `mode: "sentinel"` follows the master a Redis Sentinel names.
 *
 * Redis down at start: the store is built anyway and connects in the background; requests fail fast with
 * UNAVAILABLE naming the store and its address until Redis answers again, then work by themselves.
 *
 * @example
 * ```ts ignore
 * import { createRedisStore } from "./redis_store.ts";
 * const store = createRedisStore({ addresses: ["redis://127.0.0.1:6379/0"], keyPrefix: "cas/" });
 * await store.init?.({ get: () => store });
 * await putBytes(store, digest, bytes);
 * await store.close?.();
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import { Cluster, Redis } from "ioredis";
import { CairnError, Code } from "../util/error.ts";
import {
  backendKeyName,
  emptyStream,
  expectedUploadSize,
  isDigestKey,
  keyToString,
  notFoundError,
  resolveRange,
  uploadLimit,
} from "./helpers.ts";
import type { StoreBuildContext } from "./registry.ts";
import type { StoreKinds } from "../config/types.ts";
import { asWriteError, readInParts } from "./upload_parts.ts";
import { NO_RETRY, Retrier, type RetryPolicy, retryPolicyFrom } from "./retry.ts";
import type { ReadOptions, StoreDriver, StoreKey, UploadSize, WriteOptions } from "./types.ts";

/** How the store reaches Redis (NativeLink's `mode`). */
export type RedisMode = "standard" | "cluster" | "sentinel";

/** Options of {@linkcode createRedisStore} (the parsed `redis_store` fields). */
export interface RedisStoreOptions {
  /**
   * Standard: one `redis://[user:pass@]host:port[/db]`. Cluster: one or more seed nodes
   * (`redis://` or `redis-cluster://host:port?node=host2:port2`). Sentinel: the sentinels,
   * `redis-sentinel://[user:pass@]host:port[/db]?sentinelServiceName=NAME[&node=host2:port2]`.
   */
  readonly addresses: readonly string[];
  /** Default "standard". */
  readonly mode?: RedisMode;
  /** Prepended to every key. Default "". */
  readonly keyPrefix?: string;
  /** Per-command timeout in ms (`command_timeout_ms`, or `response_timeout_s` × 1000). Default 10000. */
  readonly commandTimeoutMs?: number;
  /** Connect timeout in ms (`connection_timeout_ms`, or `connection_timeout_s` × 1000). Default 3000. */
  readonly connectionTimeoutMs?: number;
  /** Bytes fetched per GETRANGE when streaming a read. Default 64 KiB. */
  readonly readChunkSize?: number;
  /**
   * Chunk size of newly stored values (values up to it are stored inline). Default the larger of 1 MiB and
   * `readChunkSize`: fewer, larger SETs write several times faster than 64 KiB ones.
   */
  readonly storedChunkSize?: number;
  /** Connections kept open, used round-robin. Default 3. */
  readonly connectionPoolSize?: number;
  /** Chunk writes in flight per upload. Default 10. */
  readonly maxChunkUploadsPerUpdate?: number;
  /** Most commands or scripts in flight at once over all connections (`max_client_permits`). Default 500. */
  readonly maxClientPermits?: number;
  /** Retries of failed commands. Default none. */
  readonly retry?: RetryPolicy;
  /** The top-level store name, for messages. */
  readonly storeName?: string;
}

const DEFAULT_CHUNK = 64 * 1024;
const STORED_CHUNK = 1024 * 1024;
const TMP_TTL_MS = 60 * 60 * 1000;
/** Chunks fetched ahead of the consumer while streaming a read. */
const READ_AHEAD = 4;

/** The registry factory of the `redis_store` kind. */
export function redisStoreFactory(fields: StoreKinds["redis_store"], ctx: StoreBuildContext): StoreDriver {
  const addresses = fields["addresses"];
  if (!Array.isArray(addresses) || addresses.length === 0 || addresses.some((a) => typeof a !== "string")) {
    throw ctx.error("addresses must list at least one redis:// URL");
  }
  const mode = ctx.string(fields, "mode", "standard");
  if (mode !== "standard" && mode !== "cluster" && mode !== "sentinel") {
    throw ctx.error(`mode "${mode}" is not one of "standard", "cluster", "sentinel"`);
  }
  const keyPrefix = ctx.string(fields, "key_prefix", "");
  try {
    parseRedisAddresses(mode, addresses as string[]);
    checkKeyPrefix(mode, keyPrefix);
  } catch (err) {
    throw ctx.error(err instanceof Error ? err.message : String(err));
  }
  const positive = (f: string, fallback: number) => {
    const v = ctx.number(fields, f, fallback);
    if (v === 0) return fallback; // NativeLink: 0 means "use the default"
    return v;
  };
  const commandTimeoutMs = fields["command_timeout_ms"] !== undefined
    ? positive("command_timeout_ms", 10_000)
    : positive("response_timeout_s", 10) * 1000;
  const connectionTimeoutMs = fields["connection_timeout_ms"] !== undefined
    ? positive("connection_timeout_ms", 3_000)
    : fields["connection_timeout_s"] !== undefined
    ? positive("connection_timeout_s", 3) * 1000
    : 3_000;
  return createRedisStore({
    addresses: addresses as string[],
    mode,
    keyPrefix,
    commandTimeoutMs,
    connectionTimeoutMs,
    readChunkSize: positive("read_chunk_size", DEFAULT_CHUNK),
    connectionPoolSize: positive("connection_pool_size", 3),
    maxChunkUploadsPerUpdate: positive("max_chunk_uploads_per_update", 10),
    maxClientPermits: positive("max_client_permits", 500),
    retry: retryPolicyFrom(fields, ctx),
    storeName: ctx.storeName,
  });
}

/** Builds a `redis_store`. It connects in the background; a down server is no error here. */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}

/** Where and how to connect, parsed from `addresses` for a `mode`. */
export interface RedisTarget {
  readonly mode: RedisMode;
  /** Standard: the server; cluster: seed nodes; sentinel: the sentinels. */
  readonly nodes: readonly { readonly host: string; readonly port: number }[];
  readonly username?: string;
  readonly password?: string;
  readonly db: number;
  readonly tls: boolean;
  /** Sentinel: the monitored master's name (`sentinelServiceName`). */
  readonly masterName?: string;
  readonly sentinelUsername?: string;
  readonly sentinelPassword?: string;
}

const SCHEMES: Record<RedisMode, readonly string[]> = {
  standard: ["redis:", "rediss:"],
  cluster: ["redis:", "rediss:", "redis-cluster:", "rediss-cluster:"],
  sentinel: ["redis-sentinel:", "rediss-sentinel:", "redis:", "rediss:"],
};

/**
 * Parses `addresses` for `mode` (URL grammar as in NativeLink's Redis client: `redis[s]-cluster://` and
 * `redis[s]-sentinel://` schemes, further hosts as `node=host:port` parameters, `sentinelServiceName`,
 * `sentinelUsername`, `sentinelPassword`). Throws a CairnError (INVALID_ARGUMENT) saying what is wrong.
 */
export function parseRedisAddresses(mode: RedisMode, addresses: readonly string[]): RedisTarget {
  const bad = (msg: string) => new CairnError(Code.InvalidArgument, msg);
  if (addresses.length === 0) throw bad("addresses must list at least one Redis URL");
  if (mode === "standard" && addresses.length !== 1) {
    throw bad(`standard mode takes exactly one address, got ${addresses.length}`);
  }
  const nodes: { host: string; port: number }[] = [];
  let username: string | undefined, password: string | undefined, masterName: string | undefined;
  let sentinelUsername: string | undefined, sentinelPassword: string | undefined;
  let db = 0, tls = false;
  const hostPort = (text: string, what: string) => {
    const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(text) ?? /^([^:]+)$/.exec(text);
    if (!m || !m[1]) throw bad(`${what}: ${JSON.stringify(text)} is not host:port`);
    const port = m[2] === undefined ? (mode === "sentinel" ? 26379 : 6379) : Number(m[2]);
    if (!(port > 0 && port < 65536)) throw bad(`${what}: port ${m[2]} is out of range`);
    return { host: m[1], port };
  };
  for (const address of addresses) {
    const shown = JSON.stringify(redactUrl(address));
    let url: URL;
    try {
      url = new URL(address);
    } catch {
      throw bad(`address ${shown} is not a URL`);
    }
    if (!SCHEMES[mode].includes(url.protocol)) {
      throw bad(
        `address ${shown}: ${mode} mode takes ${SCHEMES[mode].map((p) => `${p}//`).join(", ")} URLs`,
      );
    }
    if (url.protocol.startsWith("rediss")) tls = true;
    if (!url.hostname) throw bad(`address ${shown} has no host`);
    nodes.push(hostPort(url.port ? `${url.hostname}:${url.port}` : url.hostname, `address ${shown}`));
    for (const n of url.searchParams.getAll("node")) nodes.push(hostPort(n, `address ${shown} node`));
    if (url.username) username = decodeURIComponent(url.username);
    if (url.password) password = decodeURIComponent(url.password);
    const path = url.pathname.replace(/^\//, "");
    if (path !== "") {
      if (!/^\d+$/.test(path)) throw bad(`address ${shown}: database "${path}" is not a number`);
      db = Number(path);
    }
    masterName = url.searchParams.get("sentinelServiceName") ?? masterName;
    sentinelUsername = url.searchParams.get("sentinelUsername") ?? sentinelUsername;
    sentinelPassword = url.searchParams.get("sentinelPassword") ?? sentinelPassword;
  }
  if (mode === "cluster" && db !== 0) throw bad(`cluster mode has only database 0, not ${db}`);
  if (mode === "sentinel" && !masterName) {
    throw bad("sentinel mode needs the master's name: add ?sentinelServiceName=NAME to the address");
  }
  return {
    mode,
    nodes,
    db,
    tls,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(masterName !== undefined ? { masterName } : {}),
    ...(sentinelUsername !== undefined ? { sentinelUsername } : {}),
    ...(sentinelPassword !== undefined ? { sentinelPassword } : {}),
  };
}

/** In cluster mode Cairn puts its own `{hash tag}` in every key: a prefix must not carry braces. */
export function checkKeyPrefix(mode: RedisMode, prefix: string): void {
  if (mode === "cluster" && /[{}]/.test(prefix)) {
    throw new CairnError(
      Code.InvalidArgument,
      `key_prefix ${JSON.stringify(prefix)} must not contain "{" or "}" in cluster mode ` +
        `(Cairn adds a hash tag per value so all keys of one value share a slot)`,
    );
  }
}

// Scripts. KEYS[1] is a value's key: a string holding an inline value, or a hash (the manifest) of a
// chunked one. ARGV[1] the chunk key prefix `{prefix}chunk/`.
// Sum of STRLEN over a manifest's chunks (a missing chunk counts 0).
const LUA_CHUNKS_TOTAL = `
local function chunks_total(cp, id, n)
  local total = 0
  for i = 0, n - 1 do total = total + redis.call('STRLEN', cp .. id .. '/' .. i) end
  return total
end
local function drop(key, cp, id, n)
  for i = 0, n - 1 do redis.call('DEL', cp .. id .. '/' .. i) end
  redis.call('DEL', key)
end
local function kind(key) return redis.call('TYPE', key)['ok'] end
`;

/** Returns {size, chunks, id, csize, data?} or nil; deletes a manifest whose chunks are gone. */
const LUA_OPEN = LUA_CHUNKS_TOTAL + `
local t = kind(KEYS[1])
if t == 'string' then
  local data = redis.call('GET', KEYS[1])
  return {tostring(string.len(data)), '0', '', '0', data}
end
if t ~= 'hash' then return false end
local m = redis.call('HMGET', KEYS[1], 'size', 'chunks', 'id', 'csize')
local n = tonumber(m[2])
if chunks_total(ARGV[1], m[3], n) ~= tonumber(m[1]) then drop(KEYS[1], ARGV[1], m[3], n); return false end
return {m[1], m[2], m[3], m[4]}
`;

/** Sizes of many values (-1: absent or incomplete; incomplete ones are deleted). */
const LUA_HAS = LUA_CHUNKS_TOTAL + `
local out = {}
for k = 1, #KEYS do
  local t = kind(KEYS[k])
  if t == 'string' then
    out[k] = redis.call('STRLEN', KEYS[k])
  elseif t ~= 'hash' then
    out[k] = -1
  else
    local m = redis.call('HMGET', KEYS[k], 'size', 'chunks', 'id')
    local n = tonumber(m[2])
    if chunks_total(ARGV[1], m[3], n) == tonumber(m[1]) then
      out[k] = tonumber(m[1])
    else
      drop(KEYS[k], ARGV[1], m[3], n)
      out[k] = -1
    end
  end
end
return out
`;

// Publishing: ARGV = chunkPrefix, tmpPrefix, id, n, size, csize, keepExisting('1' for CAS), data (inline).
const LUA_PUBLISH = LUA_CHUNKS_TOTAL + `
local cp, tp, id, n, size = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local t = kind(KEYS[1])
local old = {false, '0', ''}
if t == 'hash' then old = redis.call('HMGET', KEYS[1], 'size', 'chunks', 'id') end
if t == 'string' then old = {tostring(redis.call('STRLEN', KEYS[1])), '0', ''} end
if n > 0 and old[3] == id then return 1 end
if n > 0 and chunks_total(tp, id, n) ~= size then
  for i = 0, n - 1 do redis.call('DEL', tp .. id .. '/' .. i) end
  return 0
end
if old[1] then
  local on = tonumber(old[2])
  if ARGV[7] == '1' and (on == 0 or chunks_total(cp, old[3], on) == tonumber(old[1])) then
    -- A CAS value is immutable: keep the complete copy already there (readers may be streaming it).
    for i = 0, n - 1 do redis.call('DEL', tp .. id .. '/' .. i) end
    return 1
  end
  drop(KEYS[1], cp, old[3], on)
end
for i = 0, n - 1 do
  local k = cp .. id .. '/' .. i
  redis.call('RENAME', tp .. id .. '/' .. i, k)
  redis.call('PERSIST', k)
end
if n == 0 then
  redis.call('SET', KEYS[1], ARGV[8])
else
  redis.call('HSET', KEYS[1], 'size', ARGV[5], 'chunks', n, 'id', id, 'csize', ARGV[6])
end
return 1
`;

const LUA_DELETE = LUA_CHUNKS_TOTAL + `
local t = kind(KEYS[1])
if t == 'string' then redis.call('DEL', KEYS[1]); return 1 end
if t ~= 'hash' then return 0 end
local m = redis.call('HMGET', KEYS[1], 'size', 'chunks', 'id')
drop(KEYS[1], ARGV[1], m[3], tonumber(m[2]))
return 1
`;

/** One connection (standard), one cluster client, or one sentinel-managed connection. */
function makeClient(
  address: string,
  target: RedisTarget,
  connectTimeout: number,
  retryStrategy: (attempt: number) => number,
): Client {
  const common = {
    lazyConnect: true,
    // Queued while (re)connecting; flushed with an error after one failed reconnect attempt.
    maxRetriesPerRequest: 1,
    connectTimeout,
    enableReadyCheck: true,
  } as const;
  const auth: { username?: string; password?: string; tls?: Record<string, never> } = {
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.tls ? { tls: {} } : {}),
  };
  if (target.mode === "standard") return new Redis(address, { ...common, retryStrategy }) as Client;
  if (target.mode === "sentinel") {
    return new Redis({
      ...common,
      ...auth,
      retryStrategy,
      sentinels: target.nodes.map((n) => ({ host: n.host, port: n.port })),
      name: target.masterName!,
      db: target.db,
      sentinelRetryStrategy: retryStrategy,
      ...(target.sentinelUsername !== undefined ? { sentinelUsername: target.sentinelUsername } : {}),
      ...(target.sentinelPassword !== undefined ? { sentinelPassword: target.sentinelPassword } : {}),
      ...(target.tls ? { enableTLSForSentinelMode: true } : {}),
    }) as Client;
  }
  return new Cluster(target.nodes.map((n) => ({ host: n.host, port: n.port })), {
    lazyConnect: true,
    enableReadyCheck: true,
    clusterRetryStrategy: retryStrategy,
    slotsRefreshTimeout: connectTimeout,
    redisOptions: { ...auth, connectTimeout, maxRetriesPerRequest: 1 },
  }) as unknown as Client;
}

interface Scripted {
  cairnOpenBuffer(key: string, chunkPrefix: string): Promise<Buffer[] | null>;
  cairnHas(...args: string[]): Promise<number[]>;
  cairnPublish(key: string, ...argv: (string | Buffer)[]): Promise<number>;
  cairnDelete(key: string, chunkPrefix: string): Promise<number>;
}

type Client = Redis & Scripted;

interface Inflight {
  readonly start: number;
  readonly reject: (err: Error) => void;
}

interface Manifest {
  readonly size: number;
  readonly chunks: number;
  readonly id: string;
  readonly csize: number;
  readonly data?: Uint8Array;
}

/** A store on a Redis server. */
export class RedisStore implements StoreDriver {
  readonly kind = "redis_store";
  readonly #clients: Client[] = [];
  #next = 0;
  /** Cluster mode: keys carry a `{hash tag}` of the value's name, and multi-key scripts run per value. */
  readonly #cluster: boolean;
  readonly #prefix: string;
  readonly #chunkPrefix: string;
  readonly #tmpPrefix: string;
  readonly #chunkSize: number;
  readonly #readChunkSize: number;
  readonly #maxUploads: number;
  readonly #retrier: Retrier;
  readonly #where: string;
  #permits: number;
  readonly #waiting: (() => void)[] = [];
  #closed = false;
  readonly #commandTimeoutMs: number;
  readonly #inflight = new Set<Inflight>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  readonly #address: string;
  readonly #mode: string;
  readonly #connectionTimeoutMs: number;

  constructor(options: RedisStoreOptions) {
    const mode = options.mode ?? "standard";
    const target = parseRedisAddresses(mode, options.addresses);
    const address = options.addresses[0]!;
    this.#mode = mode;
    this.#address = address;
    this.#connectionTimeoutMs = options.connectionTimeoutMs ?? 3_000;
    this.#prefix = options.keyPrefix ?? "";
    checkKeyPrefix(mode, this.#prefix);
    this.#cluster = mode === "cluster";
    this.#chunkPrefix = `${this.#prefix}chunk/`;
    this.#tmpPrefix = `${this.#prefix}tmp/`;
    this.#readChunkSize = Math.max(1, options.readChunkSize ?? DEFAULT_CHUNK);
    this.#chunkSize = Math.max(1, options.storedChunkSize ?? Math.max(STORED_CHUNK, this.#readChunkSize));
    this.#commandTimeoutMs = options.commandTimeoutMs ?? 10_000;
    this.#maxUploads = Math.max(1, options.maxChunkUploadsPerUpdate ?? 10);
    this.#permits = Math.max(1, options.maxClientPermits ?? 500);
    this.#retrier = new Retrier(options.retry ?? NO_RETRY);
    const at = mode === "standard"
      ? redactUrl(address)
      : `${mode} ${target.masterName ? `"${target.masterName}" ` : ""}${
        target.nodes.map((n) => `${n.host}:${n.port}`).join(",")
      }`;
    this.#where = `redis_store${options.storeName ? ` of store "${options.storeName}"` : ""} at ${at}`;
    const pool = Math.max(1, options.connectionPoolSize ?? 3);
    const connectTimeout = options.connectionTimeoutMs ?? 3_000;
    const retryStrategy = (attempt: number) => Math.min(50 * attempt, 1000);
    for (let i = 0; i < pool; i++) {
      const client = makeClient(address, target, connectTimeout, retryStrategy);
      client.on("error", () => {}); // surfaced per request as UNAVAILABLE
      client.defineCommand("cairnOpen", { numberOfKeys: 1, lua: LUA_OPEN });
      client.defineCommand("cairnPublish", { numberOfKeys: 1, lua: LUA_PUBLISH });
      client.defineCommand("cairnDelete", { numberOfKeys: 1, lua: LUA_DELETE });
      client.defineCommand("cairnHas", { lua: LUA_HAS });
      this.#clients.push(client);
    }
  }

  /** The store's `key_prefix`. */
  get keyPrefix(): string {
    return this.#prefix;
  }

  /** Where the store is, for messages (`redis_store of store "X" at redis://host:port`, password redacted). */
  get where(): string {
    return this.#where;
  }

  /**
   * A new connection to the store's server with the store's address and timeouts, owned by the caller (the
   * Redis scheduler backend uses it for its state and for pub/sub). Commands issued while it reconnects
   * fail after one failed attempt; `commandTimeout` bounds each command.
   */
  newConnection(): Redis {
    if (this.#mode !== "standard") {
      // The scheduler's scripts touch keys of several operations at once, which a cluster cannot run.
      throw new CairnError(
        Code.InvalidArgument,
        `The ${this.#where} is in mode "${this.#mode}"; scheduler state needs a redis_store in mode "standard"`,
      );
    }
    const client = new Redis(this.#address, {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      connectTimeout: this.#connectionTimeoutMs,
      commandTimeout: this.#commandTimeoutMs,
      retryStrategy: (attempt: number) => Math.min(50 * attempt, 1000),
      enableReadyCheck: true,
    });
    client.on("error", () => {}); // surfaced per command
    return client;
  }

  /** Starts connecting (a down server is not an error: requests report it). */
  init(): Promise<void> {
    for (const c of this.#clients) if (c.status === "wait") c.connect().catch(() => {});
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    // QUIT only on a live connection: one that is down would queue it until a reconnect attempt fails.
    await Promise.all(
      this.#clients.map((c) => c.status === "ready" ? c.quit().catch(() => c.disconnect()) : c.disconnect()),
    );
  }

  /** Runs one command on the next connection, with permits, retries and error mapping. */
  #run<T>(what: string, fn: (c: Client) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.#retrier.retries
      ? this.#retrier.run(() => this.#once(what, fn), signal)
      : this.#once(what, fn);
  }

  #once<T>(what: string, fn: (c: Client) => Promise<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new CairnError(Code.Unavailable, `${what}: the ${this.#where} is closed`));
    }
    const client = this.#clients[this.#next++ % this.#clients.length]!;
    const status = client.status;
    if (status === "wait") client.connect().catch(() => {});
    if (status === "reconnecting" || status === "end" || status === "close") {
      return Promise.reject(
        new CairnError(Code.Unavailable, `${what}: ${this.#where} is unreachable (${status})`),
      );
    }
    if (this.#permits > 0) {
      this.#permits--;
      return this.#start(client, what, fn);
    }
    return new Promise<void>((resolve) => this.#waiting.push(resolve)).then(() =>
      this.#start(client, what, fn)
    );
  }

  /**
   * Runs `fn` holding a permit (released when it settles or times out), its error mapped. A command running
   * longer than `command_timeout_ms` is rejected by one sweeping interval serving every command (ioredis's
   * own per-command timer costs more than a small GET on loopback). One promise per command: this is the
   * small-get hot path.
   */
  #start<T>(client: Client, what: string, fn: (c: Client) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        this.#inflight.delete(entry);
        this.#release();
        reject(this.#map(err, what));
      };
      const entry: Inflight = { start: performance.now(), reject: fail };
      this.#inflight.add(entry);
      if (this.#sweeper === undefined) this.#startSweeper();
      let promise: Promise<T>;
      try {
        promise = fn(client);
      } catch (err) {
        fail(err);
        return;
      }
      promise.then((value) => {
        if (settled) return;
        settled = true;
        this.#inflight.delete(entry);
        this.#release();
        resolve(value);
      }, fail);
    });
  }

  #startSweeper(): void {
    const every = Math.max(10, Math.min(1000, this.#commandTimeoutMs / 4));
    const id = setInterval(() => {
      const now = performance.now();
      for (const entry of this.#inflight) {
        if (now - entry.start < this.#commandTimeoutMs) continue;
        this.#inflight.delete(entry);
        entry.reject(new Error(`Command timed out after ${this.#commandTimeoutMs} ms`));
      }
    }, every);
    this.#sweeper = id;
    Deno.unrefTimer(id);
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#permits++;
  }

  #map(err: unknown, what: string): CairnError {
    if (err instanceof CairnError) return err;
    const e = err as { name?: string; message?: string };
    const msg = e?.message ?? String(err);
    if (e?.name === "ReplyError") {
      const code = msg.startsWith("OOM") ? Code.ResourceExhausted : Code.Internal;
      return new CairnError(code, `${what}: ${this.#where}: ${msg}`, { cause: err });
    }
    return new CairnError(Code.Unavailable, `${what}: ${this.#where} is unavailable: ${msg}`, { cause: err });
  }

  /** `{prefix}{name}`; in cluster mode `{prefix}{{name}}`, the name being the hash tag of all its keys. */
  #manifestKey(key: StoreKey): string {
    const name = backendKeyName(key);
    return this.#cluster ? `${this.#prefix}{${name}}` : this.#prefix + name;
  }

  /**
   * A new upload's id, the middle of its chunk keys `{prefix}tmp/{id}/{n}` and `{prefix}chunk/{id}/{n}`. In
   * cluster mode it starts with the value's hash tag, so its chunks share the manifest's slot (and its node):
   * the publish, open and delete scripts touch only keys of that one slot.
   */
  #newId(key: StoreKey): string {
    const uuid = crypto.randomUUID();
    return this.#cluster ? `{${backendKeyName(key)}}/${uuid}` : uuid;
  }

  async hasMany(keys: readonly StoreKey[]): Promise<(number | undefined)[]> {
    if (keys.length === 0) return [];
    const out: (number | undefined)[] = [];
    const BATCH = 512;
    const batches: Promise<number[]>[] = [];
    if (this.#cluster) {
      // Keys of different values live in different slots: one script per value (pipelined per node).
      for (const k of keys) {
        const name = this.#manifestKey(k);
        batches.push(this.#run("Cannot check keys", (c) => c.cairnHas("1", name, this.#chunkPrefix)));
      }
    } else {
      for (let i = 0; i < keys.length; i += BATCH) {
        const names = keys.slice(i, i + BATCH).map((k) => this.#manifestKey(k));
        batches.push(
          this.#run(
            "Cannot check keys",
            (c) => c.cairnHas(String(names.length), ...names, this.#chunkPrefix),
          ),
        );
      }
    }
    for (const sizes of await Promise.all(batches)) {
      for (const s of sizes) out.push(s < 0 ? undefined : Number(s));
    }
    return out;
  }

  async #open(key: StoreKey, signal?: AbortSignal): Promise<Manifest> {
    const what = `Cannot read ${keyToString(key)}`;
    if (signal?.aborted) throw new CairnError(Code.Cancelled, `${what}: cancelled`);
    const manifestKey = this.#manifestKey(key);
    // One GET answers an inline value (the common small case, the very command of a bare client); a chunked
    // value's key is a hash (WRONGTYPE for GET), checked by the script.
    const inline = await this.#run(
      what,
      (c) => c.getBuffer(manifestKey).catch((err) => isWrongType(err) ? undefined : Promise.reject(err)),
      signal,
    );
    if (inline === null) throw notFoundError(this.kind, key);
    let m: Manifest;
    if (inline !== undefined) {
      m = {
        size: inline.byteLength,
        chunks: 0,
        id: "",
        csize: 0,
        data: new Uint8Array(inline.buffer, inline.byteOffset, inline.byteLength),
      };
    } else {
      const reply = await this.#run(what, (c) => c.cairnOpenBuffer(manifestKey, this.#chunkPrefix), signal);
      if (!reply) throw notFoundError(this.kind, key);
      const [size, chunks, id, csize, data] = reply;
      m = {
        size: asciiNumber(size),
        chunks: asciiNumber(chunks),
        id: id!.toString(),
        csize: asciiNumber(csize),
        ...(data ? { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) } : {}),
      };
    }
    if (isDigestKey(key) && m.size !== key.size) throw notFoundError(this.kind, key);
    return m;
  }

  async readBytes(key: StoreKey, options: ReadOptions & { readonly maxSize: number }): Promise<Uint8Array> {
    const m = await this.#open(key, options.signal);
    const range = resolveRange(key, m.size, options);
    const len = range.end - range.start;
    if (len > options.maxSize) {
      throw new CairnError(
        Code.ResourceExhausted,
        `Cannot read ${keyToString(key)} into memory: ${len} bytes exceeds the limit of ${options.maxSize}`,
      );
    }
    if (m.data) return m.data.subarray(range.start, range.end);
    const out = new Uint8Array(len);
    let pos = 0;
    for await (const chunk of this.#chunkStream(key, m, range.start, range.end, options.signal)) {
      out.set(chunk, pos);
      pos += chunk.byteLength;
    }
    return out;
  }

  async read(key: StoreKey, options?: ReadOptions): Promise<ReadableStream<Uint8Array>> {
    const m = await this.#open(key, options?.signal);
    const range = resolveRange(key, m.size, options);
    if (range.end === range.start) return emptyStream();
    if (m.data) {
      const bytes = m.data.subarray(range.start, range.end);
      return new ReadableStream({
        start(c) {
          c.enqueue(bytes);
          c.close();
        },
      });
    }
    return this.#chunkStream(key, m, range.start, range.end, options?.signal);
  }

  /** Streams `[start, end)` of a chunked value, a few GETRANGEs ahead; a vanished chunk errors the stream. */
  #chunkStream(
    key: StoreKey,
    m: Manifest,
    start: number,
    end: number,
    signal?: AbortSignal,
  ): ReadableStream<Uint8Array> {
    const pieces: { chunk: number; from: number; to: number }[] = [];
    for (let pos = start; pos < end;) {
      const chunk = Math.floor(pos / m.csize);
      const from = pos - chunk * m.csize;
      const to = Math.min(m.csize, end - chunk * m.csize, from + this.#readChunkSize);
      pieces.push({ chunk, from, to });
      pos += to - from;
    }
    let next = 0;
    const inflight: Promise<Uint8Array>[] = [];
    const fetchOne = () => {
      const p = pieces[next++]!;
      const chunkKey = `${this.#chunkPrefix}${m.id}/${p.chunk}`;
      const promise = this.#run(
        `Cannot read ${keyToString(key)}`,
        (c) => c.getrangeBuffer(chunkKey, p.from, p.to - 1),
        signal,
      ).then((buf) => {
        if (buf.byteLength !== p.to - p.from) {
          throw new CairnError(
            Code.NotFound,
            `Cannot read ${keyToString(key)}: chunk ${p.chunk} vanished from the ${this.#where} ` +
              `(evicted or replaced) while it was read`,
          );
        }
        return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
      });
      promise.catch(() => {}); // observed when pulled
      inflight.push(promise);
    };
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        while (inflight.length < READ_AHEAD && next < pieces.length) fetchOne();
        const head = inflight.shift();
        if (!head) {
          controller.close();
          return;
        }
        controller.enqueue(await head);
        if (inflight.length === 0 && next >= pieces.length) controller.close();
      },
      cancel: () => {
        next = pieces.length;
        inflight.length = 0;
      },
    }, { highWaterMark: 0 });
  }

  write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    size: UploadSize,
    options?: WriteOptions,
  ): Promise<void> {
    return asWriteError(() => this.#write(key, data, expectedUploadSize(key, size), size, options?.signal));
  }

  /** Sends the value in chunks to temporary keys, then publishes them under its key in one script. */
  async #write(
    key: StoreKey,
    data: ReadableStream<Uint8Array>,
    expected: number | undefined,
    size: UploadSize,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const label = keyToString(key);
    const id = this.#newId(key);
    const chunkSize = this.#chunkSize;
    let n = 0;
    const pending: Promise<unknown>[] = [];
    let failed: unknown;
    const flushChunk = async (bytes: Buffer) => {
      const tmpKey = `${this.#tmpPrefix}${id}/${n++}`;
      const p = this.#run(`Cannot write ${label}`, (c) => c.set(tmpKey, bytes, "PX", TMP_TTL_MS), signal);
      p.catch((e) => (failed ??= e));
      pending.push(p);
      if (pending.length >= this.#maxUploads) await pending.shift();
    };
    try {
      const { rest, parts, total } = await readInParts(data, {
        label,
        expected,
        limit: uploadLimit(size),
        signal,
        cancelled: () => abortError(label, signal!),
        check: () => {
          if (failed) throw failed;
        },
        partSize: chunkSize,
        alloc: (bytes) => Buffer.allocUnsafe(bytes),
        // A full chunk is sent only once more bytes follow: a value of one chunk stays inline.
        onPart: flushChunk,
      });
      const inline = parts === 0;
      if (!inline && rest.byteLength > 0) await flushChunk(rest);
      await Promise.all(pending);
      if (failed) throw failed;
      const published = await this.#run(`Cannot write ${label}`, (c) =>
        c.cairnPublish(
          this.#manifestKey(key),
          this.#chunkPrefix,
          this.#tmpPrefix,
          id,
          String(inline ? 0 : n),
          String(total),
          String(chunkSize),
          isDigestKey(key) ? "1" : "0",
          inline ? rest : "",
        ), signal);
      if (Number(published) !== 1) {
        throw new CairnError(
          Code.Unavailable,
          `Cannot write ${label}: chunks were evicted from the ${this.#where} before the value was published`,
        );
      }
    } catch (err) {
      await Promise.allSettled(pending);
      if (n > 0) this.#dropTmp(id, n);
      if (signal?.aborted) throw abortError(label, signal);
      throw err;
    }
  }

  /** Best-effort removal of an abandoned upload's temporary chunks (their TTL removes them otherwise). */
  #dropTmp(id: string, n: number): void {
    const keys = Array.from({ length: n }, (_, i) => `${this.#tmpPrefix}${id}/${i}`);
    this.#run("Cannot clean up", (c) => c.del(...keys)).catch(() => {});
  }

  async delete(key: StoreKey): Promise<boolean> {
    const n = await this.#run(
      `Cannot delete ${keyToString(key)}`,
      (c) => c.cairnDelete(this.#manifestKey(key), this.#chunkPrefix),
    );
    return Number(n) === 1;
  }
}

/** A Redis WRONGTYPE reply (GET of a chunked value's manifest hash). */
function isWrongType(err: unknown): boolean {
  const message = (err as { message?: unknown })?.message;
  return typeof message === "string" && message.startsWith("WRONGTYPE");
}

/** A non-negative decimal integer from a reply's bytes (no string decoding: the small-get hot path); NaN if not one. */
function asciiNumber(bytes: Uint8Array | null | undefined): number {
  if (!bytes || bytes.byteLength === 0 || bytes.byteLength > 15) return NaN;
  let n = 0;
  for (let i = 0; i < bytes.byteLength; i++) {
    const d = bytes[i]! - 48;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return n;
}

function abortError(label: string, signal: AbortSignal): CairnError {
  const reason = signal.reason instanceof Error ? `: ${signal.reason.message}` : "";
  return new CairnError(Code.Cancelled, `Write of ${label} was cancelled${reason}`);
}

/** The address without its password, for messages. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@");
}
