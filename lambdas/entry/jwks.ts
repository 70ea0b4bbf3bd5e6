import type { KmsAssertionSigner } from '../adapters/kms-signer.js';
import { type ClientConfig, type ClientRegistry, isClientName } from '../core/config.js';
import type { BrokerLogger } from '../core/ports.js';

/** The path a client's JWKS is published at, below the function URL. */
export { jwksPath as jwksPathOf } from '../contract.js';

const jwksPath = /^\/clients\/([^/]{1,64})\/jwks\.json$/;

/**
 * How long a provider or a CDN may reuse the document. Rotation waits out at least this (docs/deploy.md,
 * "Hosted JWKS"), so it stays short; a provider that ignores it is covered by the waiting step too.
 */
export const jwksMaxAgeSeconds = 300;

/** A Function URL's event (payload format 2.0), as much of it as the JWKS handler reads. */
export interface FunctionUrlEvent {
  rawPath?: string;
  requestContext?: { http?: { method?: string } };
}

export interface FunctionUrlResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** The KMS keys whose public halves a client's JWKS lists, the signing key first, each once. */
export function publishedKeyArnsOf(client: ClientConfig): string[] {
  return [
    ...new Set([...(client.signingKeyArn === undefined ? [] : [client.signingKeyArn]), ...(client.jwksKeyArns ?? [])]),
  ];
}

/** Whether the client has any public key to publish: only private_key_jwt clients do. */
export function publishesJwks(client: ClientConfig): boolean {
  return (
    client.authMethod === 'private_key_jwt' && (publishedKeyArnsOf(client).length > 0 || (client.jwks ?? []).length > 0)
  );
}

/**
 * The public keys of one client, as a provider fetches them by `jwks_uri`: the KMS signing key's (with the kid and
 * alg its assertions carry), the other KMS keys of `jwksKeyArns` (kid = RFC 7638 thumbprint, no alg, so a key can
 * move from "next" to "signing" without its entry changing meaning), then the registry's static `jwks`.
 */
export async function jwksOf(client: ClientConfig, signer: KmsAssertionSigner): Promise<{ keys: object[] }> {
  const kmsKeys = await Promise.all(
    publishedKeyArnsOf(client).map(async (arn) => {
      if (arn === client.signingKeyArn) {
        const key = await signer.signingKey(arn, {
          ...(client.signingKeyId === undefined ? {} : { kid: client.signingKeyId }),
          ...(client.signingAlgorithm === undefined ? {} : { alg: client.signingAlgorithm }),
        });
        return key.publicJwk;
      }
      const { alg: _alg, ...jwk } = (await signer.signingKey(arn)).publicJwk;
      return jwk;
    }),
  );
  const seen = new Set<unknown>();
  // Two entries with one kid would leave a provider to pick either: the first (the signing key) wins.
  const keys = [...kmsKeys, ...(client.jwks ?? []).map((jwk) => ({ use: 'sig', ...jwk }))].filter((jwk) => {
    const kid = (jwk as { kid?: unknown }).kid;
    if (seen.has(kid)) return false;
    seen.add(kid);
    return true;
  });
  return { keys };
}

const answer = (statusCode: number, body: object, headers: Record<string, string> = {}): FunctionUrlResult => ({
  statusCode,
  headers: { 'content-type': 'application/json', 'x-content-type-options': 'nosniff', ...headers },
  body: JSON.stringify(body),
});

const notFound = () =>
  // The same answer for a client that does not exist and one with nothing to publish: the URL lists no clients.
  answer(404, { error: 'not_found', error_description: 'no JWKS is published at this path' });

/**
 * The public JWKS endpoint: GET (or HEAD) `/clients/<client>/jwks.json` answers the client's public keys. It reads
 * nothing but the bundled registry and KMS public keys, and it is the only unauthenticated path of the deployment,
 * so it holds no secret and can call nothing else.
 */
export function createJwksHandler(deps: {
  clients: ClientRegistry;
  signer: KmsAssertionSigner;
  logger: BrokerLogger;
}): (event: FunctionUrlEvent) => Promise<FunctionUrlResult> {
  return async (event) => {
    const method = event.requestContext?.http?.method ?? '';
    const name = jwksPath.exec(event.rawPath ?? '')?.[1];
    const client =
      name === undefined || !isClientName(name) || !Object.hasOwn(deps.clients, name) ? undefined : deps.clients[name];
    if (name === undefined || client === undefined || !publishesJwks(client)) return notFound();
    if (method !== 'GET' && method !== 'HEAD') {
      return answer(
        405,
        { error: 'invalid_request', error_description: 'the JWKS is read with GET' },
        { allow: 'GET, HEAD' },
      );
    }
    try {
      const document = await jwksOf(client, deps.signer);
      const result = answer(200, document, { 'cache-control': `public, max-age=${jwksMaxAgeSeconds}` });
      return method === 'HEAD' ? { ...result, body: '' } : result;
    } catch (error) {
      deps.logger.error('jwks unavailable', {
        client: name,
        reason: error instanceof Error ? error.message : 'unknown',
      });
      return answer(
        503,
        { error: 'temporarily_unavailable', error_description: 'the public keys cannot be read now; try again' },
        { 'retry-after': '5', 'cache-control': 'no-store' },
      );
    }
  };
}
