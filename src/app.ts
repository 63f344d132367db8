/**
 * Assembles a running Cairn from a canonical config: stores, schedulers, servers and local workers.
 *
 * The process that runs servers builds only the stores its servers and schedulers name; each local worker
 * runs in its own Deno process with permissions derived from its config, reaching the server's stores
 * through the CAS/AC services over loopback.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./config/mod.ts";
 * import { startCairn } from "./app.ts";
 * const app = await startCairn(await loadConfig("config/local.json5"), { configPath: "config/local.json5" });
 * await app.shutdown();
 * ```
 * @module
 */
import { resolve } from "node:path";
import type {
  CairnConfig,
  NamedStoreSpec,
  SchedulerKinds,
  ServerConfig,
  StoreKinds,
} from "./config/types.ts";
import {
  schedulerKindsIn,
  schedulerStoreRefs,
  serverStoreRefs,
  storeKindsIn,
  storeRefsIn,
} from "./config/walk_config.ts";
import { createStoreManager, type StoreManager } from "./store/mod.ts";
import { buildServiceBindings, type ServiceExtension } from "./service/mod.ts";
import { createExecutionExtension } from "./service/execution_extension.ts";
import { metricsExtension } from "./service/metrics_route.ts";
import { registerOpsMetrics } from "./service/ops_metrics.ts";
import { createStatusPage } from "./service/status_page.ts";
import type { SchedulerSnapshot } from "./scheduler/types.ts";
import { createSchedulers } from "./scheduler/mod.ts";
import { type CairnServer, createCairnServer } from "./transport/mod.ts";
import { CairnError, Code } from "./util/error.ts";
import { startWorkerProcesses, type WorkerProcesses } from "./worker_supervisor.ts";
import { type LocalWorkerSpec, resolveLocalWorkerSpec } from "./worker/local_worker_spec.ts";
import { randomToken } from "./auth/credentials.ts";
import { workerTokenFromEnv } from "./auth/worker_auth.ts";
import { AuthPolicy } from "./auth/policy.ts";
import { guardBindings, guardRoutes } from "./auth/guard.ts";
import { IoThread } from "./util/io_thread.ts";
import { startMallocTrim } from "./util/malloc_trim.ts";

/** Where one server listens. */
export interface ServerAddress {
  readonly index: number;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
}

/** A running Cairn. */
export interface CairnApp {
  readonly servers: readonly ServerAddress[];
  /** Resolves when the app has shut down. */
  readonly finished: Promise<void>;
  /** Graceful shutdown: stop accepting, let calls finish, stop workers, close stores. */
  shutdown(): Promise<void>;
}

/** Options of {@linkcode startCairn}. */
export interface StartOptions {
  readonly configPath: string;
  /** Where status lines go (default: stdout). */
  readonly log?: (line: string) => void;
  /** Extra service extensions (execution, worker API); the default set is added by the app itself. */
  readonly extensions?: readonly ServiceExtension[];
}

/** Names of the stores the servers and schedulers of `config` use, closed over `ref_store`. */
export function storesForServers(config: CairnConfig): Set<string> {
  const roots = new Set<string>();
  for (const server of config.servers) {
    for (const name of serverStoreRefs(server)) roots.add(name);
  }
  for (const sched of config.schedulers) {
    for (const name of schedulerStoreRefs(sched)) roots.add(name);
  }
  const byName = new Map(config.stores.map((s) => [s.name, s]));
  const queue = [...roots];
  const seen = new Set<string>();
  while (queue.length) {
    const name = queue.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    const spec = byName.get(name);
    if (spec) queue.push(...storeRefsIn(spec));
  }
  return seen;
}

/**
 * Per scheduler name, the names of the platform properties it supports: the `supported_platform_properties`
 * keys of the `simple` scheduler it is or wraps (sorted).
 */
export function schedulerNodeProperties(config: CairnConfig): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const spec of config.schedulers) {
    const names = new Set<string>();
    for (const [kind, body] of schedulerKindsIn(spec)) {
      if (kind !== "simple") continue;
      const simple = body as SchedulerKinds["simple"];
      for (const property of Object.keys(simple.supported_platform_properties ?? {})) names.add(property);
    }
    out.set(spec.name, [...names].sort());
  }
  return out;
}

/** `content_path` of every filesystem store in a spec (nested ones included). */
function filesystemPaths(spec: NamedStoreSpec): string[] {
  return storeKindsIn(spec).flatMap(([kind, body]) =>
    kind === "filesystem" ? [(body as StoreKinds["filesystem"]).content_path] : []
  );
}

/** A snapshot of each scheduler of the process that has a worker side (each counted once). */
function schedulerSnapshots(
  schedulers: ReturnType<typeof createSchedulers>,
): { name: string; snapshot: SchedulerSnapshot }[] {
  const seen = new Set<unknown>();
  const out: { name: string; snapshot: SchedulerSnapshot }[] = [];
  for (const name of schedulers.names()) {
    const w = schedulers.get(name).workers;
    if (w === undefined || seen.has(w)) continue;
    seen.add(w);
    const snapshot = w.snapshot?.();
    if (snapshot) out.push({ name, snapshot });
  }
  return out;
}

/** Host to print for a bound address (a wildcard bind is reachable on loopback). */
function printableHost(host: string): string {
  if (host === "0.0.0.0" || host === "::" || host === "") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

/** The Bazel flags that point at one server, or none when it serves no cache/execution. */
export function bazelFlags(server: ServerConfig, addr: ServerAddress): string[] {
  const s = server.services;
  const scheme = addr.tls ? "grpcs" : "grpc";
  const url = `${scheme}://${addr.tls ? "localhost" : printableHost(addr.host)}:${addr.port}`;
  const instance = s.cas?.[0]?.instance_name ?? s.execution?.[0]?.instance_name ?? "";
  const flags: string[] = [];
  if (s.cas?.length || s.ac?.length) flags.push(`--remote_cache=${url}`);
  if (s.execution?.length) flags.push(`--remote_executor=${url}`);
  if (flags.length && instance !== "") flags.push(`--remote_instance_name=${instance}`);
  return flags;
}

/** Whether a bound host is a loopback address (only this machine can connect). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(h);
}

/** Services a client reaches (everything but health, metrics and the worker API). */
function hasClientServices(server: ServerConfig): boolean {
  const s = server.services;
  return !!(s.cas || s.ac || s.bytestream || s.execution || s.capabilities || s.fetch || s.push);
}

/** The line telling how clients are authenticated, or a warning when a non-loopback server is open. */
export function describeAuth(server: ServerConfig, host: string): string | undefined {
  const auth = server.auth;
  if (auth) {
    const mtls = auth.users.some((u) => u.mtls_subject) && !server.listener.http.tls?.client_ca_file
      ? "; WARNING: mtls_subject users cannot match here, the listener verifies no client certificates " +
        "(set listener.http.tls.client_ca_file)"
      : "";
    return `requires client credentials (${auth.users.length} user(s); anonymous clients: ${auth.anonymous}${mtls})`;
  }
  if (!hasClientServices(server) || isLoopbackHost(host)) return undefined;
  return `WARNING: listening beyond loopback without an auth section: every client can read and write the ` +
    `cache and execute actions. Add auth: { users: [...] } to require tokens (see README, "Authentication").`;
}

/** The server's auth policy (the credential of this process's own workers has full access). */
function createAuthPolicy(server: ServerConfig, internalToken: string | undefined): AuthPolicy {
  return new AuthPolicy(server.auth!, internalToken ? [{ name: "cairn-worker", token: internalToken }] : []);
}

/** Starts every server (and, when the config has them, schedulers and workers). */
export async function startCairn(config: CairnConfig, options: StartOptions): Promise<CairnApp> {
  const log = options.log ?? ((line: string) => console.log(line));
  // Worker specs are checked here, before any port is bound, so a bad one never leaves a server running
  // beside a worker process that keeps failing.
  config.workers.forEach((w, i) => resolveLocalWorkerSpec(w.local as LocalWorkerSpec, i));
  const needed = storesForServers(config);
  // One I/O thread for the process: filesystem stores write large uploads on it, ByteStream hashes them on it.
  // Started on first use; stopped once, after the stores closed.
  const ioThread = new IoThread();
  let stores: StoreManager;
  try {
    stores = await createStoreManager(
      config.stores.filter((s) => needed.has(s.name)).map((s) => {
        const { name, ...spec } = s;
        return { name, spec };
      }),
      { options: { ioThread } },
    );
  } catch (err) {
    ioThread.close();
    throw err;
  }
  const closeStores = async () => {
    try {
      await stores.close();
    } finally {
      ioThread.close();
    }
  };
  for (const s of config.stores) {
    if (!needed.has(s.name)) continue;
    for (const dir of filesystemPaths(s)) log(`cairn: store "${s.name}" keeps its data in ${resolve(dir)}`);
  }

  const servers: CairnServer[] = [];
  const closers: (() => Promise<void>)[] = [];
  let schedulers;
  try {
    schedulers = createSchedulers(config.schedulers, { stores });
  } catch (err) {
    await closeStores();
    throw err;
  }
  closers.push(() => Promise.resolve(schedulers.close()));
  // Workers authenticate: this process's own worker processes get a fresh credential (never configured,
  // never on a command line); remote workers use worker_token / $CAIRN_WORKER_TOKEN.
  const internalWorkerToken = config.workers.length && config.servers.length ? randomToken() : undefined;
  let envWorkerToken: string | undefined;
  try {
    envWorkerToken = workerTokenFromEnv();
  } catch (err) {
    await closeStores();
    throw err;
  }
  const execution = createExecutionExtension(schedulers, {
    workerTokens: [internalWorkerToken, envWorkerToken].filter((t): t is string => t !== undefined),
  });
  const snapshots = () => schedulerSnapshots(schedulers);
  const removeOpsMetrics = registerOpsMetrics({ schedulers: snapshots, stores: () => stores.usage() });
  closers.push(() => Promise.resolve(removeOpsMetrics()));
  const pageShutdown = new AbortController();
  const statusPage = createStatusPage({
    schedulers: snapshots,
    stores: () =>
      stores.usage().map((r) => ({
        name: r.path.includes(".") ? `${r.store} › ${r.path}` : r.store,
        kind: r.kind,
        bytes: r.bytes,
        maxBytes: r.maxBytes,
        count: r.count,
      })),
    signal: pageShutdown.signal,
  });
  closers.push(() => Promise.resolve(statusPage.close()));
  const addresses: ServerAddress[] = [];
  const nodeProperties = schedulerNodeProperties(config);
  try {
    for (const [index, server] of config.servers.entries()) {
      const built = buildServiceBindings({
        services: server.services,
        stores,
        schedulers,
        nodeProperties,
        extensions: [execution, metricsExtension, ...(options.extensions ?? [])],
        ioThread,
      });
      if (built.unhandled.length) {
        throw new CairnError(
          Code.Unimplemented,
          `servers[${index}].services: ${built.unhandled.join(", ")} not supported yet`,
        );
      }
      closers.push(() => Promise.resolve(built.close()));
      // Client authentication: one policy per server, checked before any handler runs.
      const policy = server.auth ? createAuthPolicy(server, internalWorkerToken) : undefined;
      // The live status page is served where an operator already looks: beside the metrics.
      const routes = server.services.experimental_prometheus !== undefined
        ? [...built.routes, statusPage.route]
        : built.routes;
      const srv = createCairnServer({
        listener: server.listener.http,
        bindings: policy ? guardBindings(built.bindings, policy) : built.bindings,
        routes: policy ? guardRoutes(routes, policy) : routes,
      });
      servers.push(srv);
      let bound;
      try {
        bound = await srv.listen();
      } catch (err) {
        // The transport wraps the socket error (its `cause` carries the errno name) and may already say
        // "Cannot listen on …": name the address and the config field once.
        const cause = (err as { cause?: { code?: unknown } }).cause;
        const why = cause?.code === "EADDRINUSE"
          ? "address already in use"
          : (err as Error).message.replace(/^Cannot listen on "[^"]*": /, "");
        throw new CairnError(
          Code.Unavailable,
          `Cannot listen on ${server.listener.http.socket_address} (servers[${index}].listener.http): ${why}`,
        );
      }
      const addr: ServerAddress = {
        index,
        host: bound.host,
        port: bound.port,
        tls: !!server.listener.http.tls,
      };
      addresses.push(addr);
      const names = Object.keys(server.services).join(", ") || "no services";
      log(`cairn: server ${index} listening on ${printableHost(bound.host)}:${bound.port} (${names})`);
      const authLine = describeAuth(server, bound.host);
      if (authLine) log(`cairn: server ${index} ${authLine}`);
      const flags = bazelFlags(server, addr);
      if (flags.length) log(`cairn: bazel flags: ${flags.join(" ")}`);
    }
  } catch (err) {
    await Promise.allSettled(servers.map((s) => s.close(0)));
    await Promise.allSettled(closers.map((c) => c()));
    await closeStores();
    throw err;
  }

  // Workers run in their own processes and reach the stores they share with this one over loopback gRPC.
  let workers: WorkerProcesses | undefined;
  if (config.workers.length) {
    const cas = addresses.find((a) => {
      const s = config.servers[a.index]!.services;
      return !a.tls && s.cas?.length && s.ac?.length && s.bytestream?.length;
    });
    workers = startWorkerProcesses(config, options.configPath, {
      casEndpoint: cas ? `grpc://${printableHost(cas.host)}:${cas.port}` : undefined,
      workerToken: internalWorkerToken,
      log,
    });
  }

  // Freed native memory goes back to the system after bursts instead of holding RSS at its high-water mark.
  const trimmer = startMallocTrim();

  let resolveFinished!: () => void;
  const finished = new Promise<void>((r) => resolveFinished = r);
  let shuttingDown: Promise<void> | undefined;
  const shutdown = () => {
    shuttingDown ??= (async () => {
      // Workers drain first (their running actions still need the CAS and the scheduler), then the servers.
      await workers?.stop();
      pageShutdown.abort();
      await Promise.allSettled(servers.map((s) => s.close()));
      await Promise.allSettled(closers.map((c) => c()));
      await closeStores();
      trimmer?.stop();
      resolveFinished();
    })();
    return shuttingDown;
  };
  log("cairn: ready");
  return { servers: addresses, finished, shutdown };
}
