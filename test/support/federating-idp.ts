/**
 * A token endpoint that authenticates clients by a federated assertion, the way Microsoft Entra ID's federated
 * identity credentials and Keycloak's federated client authentication do, for the secretless path (issue 17 item 6).
 * oidc-provider, the tests' real OAuth server, requires a client assertion's `iss` and `sub` to be the client id, so
 * it cannot stand for these providers; this server implements only what they check, with panva's `jose` doing the
 * verification: the assertion is an RFC 7523 JWT, its `iss`, `sub` and `aud` must match a credential registered for
 * the `client_id` sent, its signature must verify with the keys of that issuer's JWKS (found by OpenID discovery over
 * TLS), it must not have expired, and a `jti` is accepted once.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:https';
import { createRemoteJWKSet, decodeJwt, type JWTPayload, jwtVerify } from 'jose';
import { listenOnLoopback } from '../../lambdas/local/listen.js';

export interface FederatedCredential {
  clientId: string;
  /** The issuer the provider trusts for this client (the AWS account's STS issuer URL). */
  issuer: string;
  /** The `sub` it must carry (the role's ARN). */
  subject: string;
  /** The `aud` it must carry (Entra ID: `api://AzureADTokenExchange`). */
  audience: string;
  scopes: string[];
}

export interface FederatingIdp {
  /** Its OpenID discovery document: issuer and token endpoint on one host, private_key_jwt only. */
  wellKnownUrl: string;
  tokenRequests(): number;
  /** Claims of the last assertion that verified. */
  lastVerifiedClaims(): JWTPayload | undefined;
  /** Every access token issued, for leak checks. */
  issuedTokens(): string[];
  close(): Promise<void>;
}

const assertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export async function startFederatingIdp(options: {
  tls: { key: string; cert: string };
  credentials: FederatedCredential[];
}): Promise<FederatingIdp> {
  let requests = 0;
  let lastClaims: JWTPayload | undefined;
  const issued: string[] = [];
  const seenJtis = new Set<string>();
  const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  const keySetOf = async (issuer: string) => {
    let keySet = keySets.get(issuer);
    if (keySet === undefined) {
      const metadata = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as {
        issuer?: string;
        jwks_uri?: string;
      };
      if (metadata.issuer !== issuer || typeof metadata.jwks_uri !== 'string') throw new Error('bad issuer metadata');
      keySet = createRemoteJWKSet(new URL(metadata.jwks_uri));
      keySets.set(issuer, keySet);
    }
    return keySet;
  };

  const server = createServer({ key: options.tls.key, cert: options.tls.cert }, (req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    const path = new URL(req.url ?? '/', 'https://localhost').pathname;
    if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
      return send(200, {
        issuer,
        token_endpoint: `${issuer}/oauth2/token`,
        token_endpoint_auth_methods_supported: ['private_key_jwt'],
        grant_types_supported: ['client_credentials'],
      });
    }
    if (req.method !== 'POST' || path !== '/oauth2/token') return send(404, { error: 'not_found' });
    requests += 1;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      void (async () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        const refuse = (description: string) => send(401, { error: 'invalid_client', error_description: description });
        if (form.get('grant_type') !== 'client_credentials') {
          return send(400, { error: 'unsupported_grant_type' });
        }
        if (form.get('client_assertion_type') !== assertionType) return refuse('client_assertion_type');
        const assertion = form.get('client_assertion') ?? '';
        const credential = options.credentials.find((c) => c.clientId === form.get('client_id'));
        if (credential === undefined) return refuse('unknown client_id');
        let claims: JWTPayload;
        try {
          // The issuer is the registered one: an assertion naming another is refused before any key is fetched.
          if (decodeJwt(assertion).iss !== credential.issuer) return refuse('assertion issuer not trusted');
          ({ payload: claims } = await jwtVerify(assertion, await keySetOf(credential.issuer), {
            issuer: credential.issuer,
            subject: credential.subject,
            audience: credential.audience,
            algorithms: ['RS256', 'ES384'],
            requiredClaims: ['exp', 'iat', 'jti'],
          }));
        } catch (error) {
          return refuse(`assertion does not verify (${(error as { code?: string }).code ?? 'invalid'})`);
        }
        if (seenJtis.has(claims.jti as string)) return refuse('assertion replayed');
        seenJtis.add(claims.jti as string);
        lastClaims = claims;
        const requested = (form.get('scope') ?? credential.scopes.join(' ')).split(' ').filter(Boolean);
        if (requested.some((scope) => !credential.scopes.includes(scope))) return send(400, { error: 'invalid_scope' });
        const token = randomBytes(32).toString('base64url');
        issued.push(token);
        send(200, { access_token: token, token_type: 'Bearer', expires_in: 3600, scope: requested.join(' ') });
      })().catch(() => send(500, { error: 'server_error' }));
    });
  });
  const port = await listenOnLoopback(server);
  const issuer = `https://localhost:${port}`;
  return {
    wellKnownUrl: `${issuer}/.well-known/openid-configuration`,
    tokenRequests: () => requests,
    lastVerifiedClaims: () => lastClaims,
    issuedTokens: () => [...issued],
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
