/**
 * Worker credentials: the worker API (`cairn.worker.v1.WorkerApi`) admits only workers presenting
 * `authorization: Bearer TOKEN` with a token the server issued or was configured with:
 *
 * - the all-in-one start generates a random credential and hands it to the worker processes it spawns
 *   through their environment (`CAIRN_INTERNAL_WORKER_TOKEN`, removed from the worker's environment as soon
 *   as it is read; never on a command line);
 * - split deployments configure `worker_api.worker_token` on the scheduler and
 *   `worker_api_endpoint.worker_token` on each worker (or set `CAIRN_WORKER_TOKEN` in both environments).
 *
 * Anything else (no header, another token, a Basic credential) is UNAUTHENTICATED before a single message is
 * read from the worker.
 *
 * @example
 * ```ts
 * import { createWorkerAuthenticator } from "./worker_auth.ts";
 * const check = createWorkerAuthenticator(["a-long-random-token"]);
 * check(new Headers({ authorization: "Bearer a-long-random-token" })); // ok; throws UNAUTHENTICATED otherwise
 * ```
 * @module
 */
import { CairnError, Code } from "../util/error.ts";
import { parseAuthorization, sameSecret, sha256Hex } from "./credentials.ts";

/** The environment variable through which Cairn hands its own worker processes their credential. */
export const INTERNAL_WORKER_TOKEN_ENV = "CAIRN_INTERNAL_WORKER_TOKEN";
/** The environment variable read when `worker_token` is not configured (scheduler and worker side). */
export const WORKER_TOKEN_ENV = "CAIRN_WORKER_TOKEN";
/** Shortest accepted configured worker token. */
export const MIN_WORKER_TOKEN_LENGTH = 16;

/** Checks a configured worker token; returns it, or undefined when empty. */
export function checkWorkerToken(token: string | undefined, where: string): string | undefined {
  if (token === undefined || token === "") return undefined;
  if (token.length < MIN_WORKER_TOKEN_LENGTH) {
    throw new CairnError(
      Code.InvalidArgument,
      `${where}: the worker token must be at least ${MIN_WORKER_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 32\`)`,
    );
  }
  return token;
}

/**
 * Reads (and removes from this process's environment) the credential a parent Cairn handed this worker
 * process. Undefined when there is none.
 */
export function takeInternalWorkerToken(): string | undefined {
  try {
    const token = Deno.env.get(INTERNAL_WORKER_TOKEN_ENV);
    if (token !== undefined) Deno.env.delete(INTERNAL_WORKER_TOKEN_ENV);
    return token || undefined;
  } catch {
    return undefined; // no env permission: no inherited credential
  }
}

/** Removes `CAIRN_WORKER_TOKEN` from this process's environment (a worker process, once it has read it). */
export function forgetWorkerTokenEnv(): void {
  try {
    Deno.env.delete(WORKER_TOKEN_ENV);
  } catch {
    // no env permission: nothing was readable either
  }
}

/** `CAIRN_WORKER_TOKEN` from the environment, when set (and long enough). */
export function workerTokenFromEnv(): string | undefined {
  let token: string | undefined;
  try {
    token = Deno.env.get(WORKER_TOKEN_ENV);
  } catch {
    return undefined;
  }
  return checkWorkerToken(token, `$${WORKER_TOKEN_ENV}`);
}

/**
 * Returns a check of a worker's request headers against `tokens` (kept as SHA-256 digests, compared in
 * constant time). Throws UNAUTHENTICATED when no token matches.
 */
export function createWorkerAuthenticator(tokens: readonly string[]): (headers: Headers) => void {
  const digests = tokens.map(sha256Hex);
  if (digests.length === 0) throw new Error("createWorkerAuthenticator needs at least one token");
  return (headers) => {
    let presented: string | undefined;
    try {
      const cred = parseAuthorization(headers.get("authorization"));
      if (cred?.kind === "bearer") presented = sha256Hex(cred.token);
    } catch {
      presented = undefined;
    }
    let ok = false;
    for (const d of digests) ok = (presented !== undefined && sameSecret(presented, d)) || ok;
    if (!ok) {
      throw new CairnError(
        Code.Unauthenticated,
        presented === undefined
          ? "The worker API needs a worker credential (authorization: Bearer <worker token>)"
          : "The worker API refused the worker credential",
      );
    }
  };
}
