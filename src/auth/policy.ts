/**
 * Client authentication and per-instance permissions of one server — the one place every access check
 * happens (gRPC, Connect/gRPC-Web and the HTTP cache all call {@linkcode AuthPolicy.check}).
 *
 * A caller is identified by, in this order: an `authorization` header (`Bearer TOKEN`, or `Basic` with a
 * user's name and password), else the CN of a client certificate the listener verified (`mtls_subject`),
 * else it is anonymous. A credential that matches nobody is UNAUTHENTICATED (never silently anonymous).
 * Then {@linkcode AuthPolicy.authorize} needs the permission on the instance: the user's entry for that
 * instance name, else its `"*"` entry. Lacking it: PERMISSION_DENIED for a known identity, UNAUTHENTICATED for
 * an anonymous caller (it should authenticate). Tokens and passwords are compared as SHA-256 digests in
 * constant time.
 *
 * @example
 * ```ts
 * import { AuthPolicy } from "./policy.ts";
 * import { sha256Hex } from "./credentials.ts";
 * const policy = new AuthPolicy({
 *   anonymous: "read",
 *   users: [{ name: "ci", token_sha256: sha256Hex("s3cret"), permissions: { "*": ["read", "write_cas", "write_ac"] } }],
 * });
 * const who = policy.identify(new Headers({ authorization: "Bearer s3cret" }));
 * policy.authorize(who, "main", "write_ac"); // throws UNAUTHENTICATED / PERMISSION_DENIED
 * ```
 * @module
 */
import type { AuthConfig, AuthPermission } from "../config/types.ts";
import type { PeerInfo } from "../transport/peer.ts";
import { CairnError, Code } from "../util/error.ts";
import { parseAuthorization, sameSecret, sha256Hex } from "./credentials.ts";

/** Every permission, in the order they are documented. */
export const ALL_PERMISSIONS: readonly AuthPermission[] = ["read", "write_cas", "write_ac", "execute"];

/** Who is calling and what it may do. */
export interface Identity {
  readonly name: string;
  readonly anonymous: boolean;
  /** Permissions on one instance. */
  permissionsOn(instance: string): ReadonlySet<AuthPermission>;
  /** Whether the permission holds on every instance (checks may then skip finding the instance). */
  hasEverywhere(permission: AuthPermission): boolean;
}

/** An extra credential with full access (the one Cairn hands its own worker processes). */
export interface InternalCredential {
  readonly name: string;
  readonly token: string;
}

function makeIdentity(
  name: string,
  anonymous: boolean,
  grants: Record<string, readonly AuthPermission[]>,
): Identity {
  const byInstance = new Map<string, ReadonlySet<AuthPermission>>();
  for (const [instance, list] of Object.entries(grants)) byInstance.set(instance, new Set(list));
  const fallback = byInstance.get("*") ?? new Set<AuthPermission>();
  const everywhere = new Set(
    ALL_PERMISSIONS.filter((p) => fallback.has(p) && [...byInstance.values()].every((set) => set.has(p))),
  );
  return {
    name,
    anonymous,
    permissionsOn: (instance) => byInstance.get(instance) ?? fallback,
    hasEverywhere: (permission) => everywhere.has(permission),
  };
}

const FULL: Record<string, readonly AuthPermission[]> = { "*": ALL_PERMISSIONS };

interface User {
  readonly identity: Identity;
  readonly tokenSha256: string | undefined;
  readonly passwordSha256: string | undefined;
  readonly mtlsSubject: string | undefined;
}

/** One server's authentication and permissions. */
export class AuthPolicy {
  readonly #users: readonly User[];
  readonly #anonymous: Identity;
  readonly #mode: AuthConfig["anonymous"];
  readonly #configuredUsers: number;

  constructor(config: AuthConfig, internal: readonly InternalCredential[] = []) {
    this.#mode = config.anonymous;
    this.#configuredUsers = config.users.length;
    this.#anonymous = makeIdentity(
      "anonymous",
      true,
      config.anonymous === "full" ? FULL : config.anonymous === "read" ? { "*": ["read"] } : {},
    );
    this.#users = [
      ...config.users.map((u) => ({
        identity: makeIdentity(u.name, false, u.permissions),
        tokenSha256: u.token_sha256?.toLowerCase(),
        passwordSha256: u.password_sha256?.toLowerCase(),
        mtlsSubject: u.mtls_subject || undefined,
      })),
      ...internal.map((c) => ({
        identity: makeIdentity(c.name, false, FULL),
        tokenSha256: sha256Hex(c.token),
        passwordSha256: undefined,
        mtlsSubject: undefined,
      })),
    ];
  }

  /** What anonymous callers may do. */
  get anonymous(): AuthConfig["anonymous"] {
    return this.#mode;
  }

  /** True when every caller may do everything (no configured user, anonymous `full`): nothing to check. */
  get open(): boolean {
    return this.#mode === "full" && this.#configuredUsers === 0;
  }

  /** Identifies a caller from its request headers and peer; UNAUTHENTICATED for a credential nobody has. */
  identify(headers: Headers, peer?: PeerInfo): Identity {
    const credential = parseAuthorization(headers.get("authorization"));
    if (credential !== undefined) {
      let found: User | undefined;
      if (credential.kind === "bearer") {
        const digest = sha256Hex(credential.token);
        // Compare with every user (no early exit) so timing does not tell how many digests were tried.
        for (const u of this.#users) {
          if (u.tokenSha256 !== undefined && sameSecret(digest, u.tokenSha256) && found === undefined) {
            found = u;
          }
        }
      } else {
        const digest = sha256Hex(credential.password);
        for (const u of this.#users) {
          const ok = u.passwordSha256 !== undefined && sameSecret(digest, u.passwordSha256) &&
            u.identity.name === credential.user;
          if (ok && found === undefined) found = u;
        }
      }
      if (found === undefined) {
        throw new CairnError(
          Code.Unauthenticated,
          credential.kind === "bearer"
            ? "The bearer token is not valid for this server"
            : `The user name or password of "${credential.user}" is not valid for this server`,
        );
      }
      return found.identity;
    }
    const cn = peer?.clientCertSubjectCN;
    if (cn !== undefined) {
      const user = this.#users.find((u) => u.mtlsSubject === cn);
      if (user) return user.identity;
    }
    return this.#anonymous;
  }

  /**
   * Throws unless `identity` holds `permission` on `instance` (undefined: an instance the request does not
   * name clearly, which needs the permission everywhere).
   */
  authorize(identity: Identity, instance: string | undefined, permission: AuthPermission): void {
    const ok = instance === undefined
      ? identity.hasEverywhere(permission)
      : identity.permissionsOn(instance).has(permission);
    if (ok) return;
    const where = instance === undefined ? "every instance" : `instance ${JSON.stringify(instance)}`;
    if (identity.anonymous) {
      throw new CairnError(
        Code.Unauthenticated,
        `Anonymous clients may not ${permission} on ${where}: present a credential (authorization: Bearer <token>)`,
      );
    }
    throw new CairnError(
      Code.PermissionDenied,
      `"${identity.name}" has no ${permission} permission on ${where}`,
    );
  }

  /** {@linkcode identify} then {@linkcode authorize}; returns the identity. */
  check(
    headers: Headers,
    peer: PeerInfo | undefined,
    instance: string | undefined,
    permission: AuthPermission,
  ): Identity {
    const identity = this.identify(headers, peer);
    this.authorize(identity, instance, permission);
    return identity;
  }
}
