/**
 * TLS for listeners: loads the certificate, key and client CA named by a listener's `tls` config. Client
 * certificates are checked by `deno_compat/client_cert.ts`.
 *
 * @example
 * ```ts ignore
 * import { loadListenerTls } from "./tls.ts";
 * const tls = await loadListenerTls({ cert_file: "server.pem", key_file: "server.key", client_ca_file: "ca.pem" });
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { CairnError, Code } from "../util/error.ts";
import type { ListenerTlsConfig } from "./types.ts";

/** What a TLS listener needs. */
export interface ListenerTls {
  readonly cert: string;
  readonly key: string;
  /** Trusted client CAs; set when client certificates are required. */
  readonly clientCas: readonly X509Certificate[] | undefined;
  /** The client CA bundle as PEM (handed to the TLS stack so clients know which certificate to send). */
  readonly clientCaPem: string | undefined;
}

/** Reads the files a listener's `tls` config names. */
export async function loadListenerTls(config: ListenerTlsConfig): Promise<ListenerTls> {
  const cert = await readPem(config.cert_file, "cert_file");
  const key = await readPem(config.key_file, "key_file");
  checkKeyPair(config, cert, key);
  const caFile = config.client_ca_file ?? (config.verify_client ? config.ca_file : undefined);
  if (config.verify_client && caFile === undefined) {
    throw new CairnError(
      Code.InvalidArgument,
      "Cannot set up TLS: verify_client is set but ca_file is missing",
    );
  }
  if (caFile === undefined) return { cert, key, clientCas: undefined, clientCaPem: undefined };
  const clientCaPem = await readPem(caFile, "client_ca_file");
  const clientCas = splitPem(clientCaPem).map((pem) => new X509Certificate(pem));
  if (clientCas.length === 0) {
    throw new CairnError(Code.InvalidArgument, `Cannot set up TLS: ${caFile} holds no certificate`);
  }
  return { cert, key, clientCas, clientCaPem };
}

/** Refuses a cert_file/key_file that do not parse or do not belong together (else every handshake fails). */
function checkKeyPair(config: ListenerTlsConfig, cert: string, key: string): void {
  let leaf: X509Certificate;
  try {
    const first = splitPem(cert)[0];
    if (first === undefined) throw new Error("no PEM certificate found");
    leaf = new X509Certificate(first);
  } catch (err) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot set up TLS: cert_file ${config.cert_file} holds no valid certificate (${
        (err as Error).message
      })`,
      { cause: err },
    );
  }
  let publicDer: Uint8Array;
  try {
    publicDer = createPublicKey(createPrivateKey(key)).export({ type: "spki", format: "der" });
  } catch (err) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot set up TLS: key_file ${config.key_file} holds no valid private key (${(err as Error).message})`,
      { cause: err },
    );
  }
  const certDer = leaf.publicKey.export({ type: "spki", format: "der" });
  if (Buffer.compare(Buffer.from(publicDer), Buffer.from(certDer)) !== 0) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot set up TLS: key_file ${config.key_file} does not match the certificate in cert_file ${config.cert_file}`,
    );
  }
}

function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

async function readPem(path: string, field: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot set up TLS: ${field} ${path} cannot be read: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
