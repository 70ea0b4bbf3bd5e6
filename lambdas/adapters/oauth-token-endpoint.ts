import { createHash, randomUUID, webcrypto } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import { maxLifetimeSeconds } from '../contract.js';
import {
  type ClientConfig,
  discoveryLocation,
  isLoopbackHost,
  providerHostOf,
  providerKeyOf,
  type WebIdentitySigningAlgorithm,
} from '../core/config.js';
import { plainCode } from '../core/echo.js';
import { isApprovedTokenEndpointHost, isPlainHost } from '../core/endpoint-hosts.js';
import { BrokerError } from '../core/errors.js';
import {
  type AssertionAlgorithm,
  assertionAlgorithms,
  type BrokerLogger,
  type BrokerMetrics,
  type ClientCredentials,
  type Clock,
  type IssuedToken,
  type PrivateJwk,
  type TokenEndpoint,
  type TokenRequest,
} from '../core/ports.js';
import { SingleFlight } from '../core/single-flight.js';
import type { KmsAssertionSigner } from './kms-signer.js';
import { type Traced, untraced } from './observability.js';
import {
  createResilientFetch,
  type ResilientFetchOptions,
  ResponseTooLargeError,
  retryAfterMs,
  UpstreamTimeoutError,
} from './resilient-fetch.js';
import type { StsWebIdentityAssertions } from './sts-web-identity.js';

export const defaultDiscoveryMaxAgeMs = 60 * 60_000;
/**
 * Longer than any access token a sane server issues for client credentials; anything above is nonsense. The
 * contract's lifetime limit, which also bounds every lifetime setting.
 */
export const maxExpiresInSeconds = maxLifetimeSeconds;

export interface OAuthTokenEndpointOptions {
  clock: Clock;
  logger: BrokerLogger;
  /** Counts refused token endpoints (`TokenEndpointRefused`). */
  metrics?: BrokerMetrics;
  /**
   * The deployment's approved token endpoint host patterns (`tokenBroker.tokenEndpointHosts`), for clients
   * without `tokenEndpointHosts` of their own; their issuer's host is approved too. @default none
   */
  approvedTokenEndpointHosts?: readonly string[];
  /** Plain http to loopback hosts, for the local dev server only. */
  allowLoopbackHttp?: boolean;
  /** Timeouts, retries and the body cap of every upstream request. */
  http?: Omit<ResilientFetchOptions, 'clock'>;
  discoveryMaxAgeMs?: number;
  /** X-Ray subsegments around discovery and the token call. */
  traced?: Traced;
  /** Signs the client assertions of clients whose key is in KMS (`signingKeyArn`). */
  kmsSigner?: KmsAssertionSigner;
  /** Mints the client assertions of secretless clients (`webIdentityAudience`) with AWS STS. */
  webIdentity?: StsWebIdentityAssertions;
}

interface Discovered {
  server: oauth.AuthorizationServer;
  fetchedAt: number;
}

type Stage = 'discovery' | 'token';

/**
 * The client-credentials exchange over HTTP, through oauth4webapi. The token endpoint always comes from
 * the client's discovery document (for Amazon Cognito it is on another host than the issuer), and every
 * failure is translated into the broker's error model here and nowhere else.
 */
export class OAuthTokenEndpoint implements TokenEndpoint {
  private readonly discovered = new Map<string, Discovered>();
  private readonly discovering = new SingleFlight<string, oauth.AuthorizationServer>();
  private readonly discoveryMaxAgeMs: number;
  private readonly fetch: ReturnType<typeof createResilientFetch>;
  private readonly traced: Traced;
  private readonly signingKeys = new WeakMap<PrivateJwk, Promise<webcrypto.CryptoKey>>();

  constructor(private readonly options: OAuthTokenEndpointOptions) {
    this.discoveryMaxAgeMs = options.discoveryMaxAgeMs ?? defaultDiscoveryMaxAgeMs;
    this.traced = options.traced ?? untraced;
    this.fetch = createResilientFetch({ ...options.http, clock: options.clock });
  }

  async fetchToken(request: TokenRequest): Promise<IssuedToken> {
    const { clientName, client, credentials } = request;
    const server = await this.discover(clientName, client, request.deadline);
    // Checked at every use, not only when fetched: clients sharing a wellKnownUrl share its cached document.
    this.checkApprovedTokenEndpoint(server, client, clientName);
    const clientAuth = await this.clientAuthFor(client, server, credentials);
    const oauthClient: oauth.Client = { client_id: credentials.clientId };
    const parameters = new URLSearchParams();
    if (request.scope !== '') parameters.set('scope', request.scope);
    if (request.audience !== undefined) parameters.set('audience', request.audience);
    if (request.resource !== undefined) parameters.set('resource', request.resource);

    let raw: unknown;
    try {
      const response = await this.traced('token-endpoint', () =>
        oauth.clientCredentialsGrantRequest(
          server,
          oauthClient,
          clientAuth,
          parameters,
          this.httpOptions(server.token_endpoint ?? '', request.deadline),
        ),
      );
      // oauth4webapi checks the answer leniently (it accepts "3600" for expires_in); the raw body is checked strictly.
      raw =
        response.status === 200
          ? await response
              .clone()
              .json()
              .catch(() => undefined)
          : undefined;
      await oauth.processClientCredentialsResponse(server, oauthClient, response);
    } catch (error) {
      throw translateUpstreamError(error, clientName, 'token');
    }
    return validateTokenResponse(raw, client, clientName, this.options.clock.now());
  }

  /**
   * The credentials go only to an approved host (see core/endpoint-hosts.ts), whatever a tampered or
   * misconfigured discovery document names. The caller's error does not repeat the host (the document's text);
   * the log line does, once it is known to be a plain host.
   */
  private checkApprovedTokenEndpoint(
    server: oauth.AuthorizationServer,
    client: ClientConfig,
    clientName: string,
  ): void {
    let host: string | undefined;
    try {
      host = new URL(server.token_endpoint ?? '').host;
    } catch {
      host = undefined;
    }
    const approval = {
      clientHosts: client.tokenEndpointHosts,
      issuerHost: providerHostOf(client),
      deploymentHosts: this.options.approvedTokenEndpointHosts ?? [],
    };
    if (host !== undefined && isApprovedTokenEndpointHost(host, approval)) return;
    const pinned = client.tokenEndpointHosts !== undefined;
    const setting = `tokenBroker.clients.${clientName}.tokenEndpointHosts`;
    this.options.metrics?.count('TokenEndpointRefused', clientName);
    this.options.logger.error('token endpoint host not approved; nothing was sent', {
      client: clientName,
      tokenEndpointHost: isPlainHost(host) ? host : '(not a plain host name)',
      issuerHost: approval.issuerHost,
      approvedBy: pinned ? setting : 'issuer host, tokenBroker.tokenEndpointHosts',
    });
    throw new BrokerError(
      'upstream_error',
      `the token endpoint host of client ${clientName} is not approved, so nothing was sent: ` +
        (pinned
          ? `discovery names a host outside ${setting}; correct ${setting}`
          : 'discovery names a host other than its issuer and outside tokenBroker.tokenEndpointHosts; ' +
            `pin it with ${setting}`) +
        ' (the broker log names the refused host)',
    );
  }

  private async clientAuthFor(
    client: ClientConfig,
    server: oauth.AuthorizationServer,
    credentials: ClientCredentials,
  ): Promise<oauth.ClientAuth> {
    if (credentials.kmsKeyArn !== undefined) return this.kmsClientAuth(client, server, credentials.kmsKeyArn);
    if (credentials.webIdentity !== undefined) return this.webIdentityClientAuth(credentials.webIdentity);
    if (credentials.privateKeyJwk !== undefined) {
      const jwk = credentials.privateKeyJwk;
      const key = await this.signingKey(jwk);
      const thumbprint = certificateThumbprintOf(jwk);
      // What SMART Backend Services, Epic, Okta and Entra ID all accept: typ JWT and the kid in the header (and
      // the certificate's thumbprint when the key has one), aud the token endpoint, at most five minutes of life
      // and a fresh jti (oauth4webapi draws one per assertion).
      return oauth.PrivateKeyJwt(
        { key, kid: jwk.kid },
        {
          [oauth.modifyAssertion]: (header, payload) => {
            header.typ = 'JWT';
            if (thumbprint !== undefined) header['x5t#S256'] = thumbprint;
            payload.aud = server.token_endpoint;
            payload.exp = (payload.iat as number) + 300;
          },
        },
      );
    }
    return authMethodFor(client, server) === 'client_secret_post'
      ? oauth.ClientSecretPost(credentials.clientSecret)
      : oauth.ClientSecretBasic(credentials.clientSecret);
  }

  /**
   * The same assertion as for a key in the secret (typ JWT, kid, aud the token endpoint, five minutes, a fresh
   * jti), signed by KMS: oauth4webapi signs only with a CryptoKey, so the assertion is put together here.
   */
  private async kmsClientAuth(client: ClientConfig, server: oauth.AuthorizationServer, keyArn: string) {
    const signer = this.options.kmsSigner;
    if (signer === undefined) throw new BrokerError('server_error', 'the broker was built without a KMS signer');
    const key = await signer.signingKey(keyArn, {
      ...(client.signingKeyId === undefined ? {} : { kid: client.signingKeyId }),
      ...(client.signingAlgorithm === undefined ? {} : { alg: client.signingAlgorithm }),
    });
    const clientAuth: oauth.ClientAuth = async (_server, oauthClient, body) => {
      // Wall-clock time, as oauth4webapi's own assertions use: the provider judges iat and exp by its clock.
      const now = Math.floor(Date.now() / 1000);
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      const signingInput = `${encode({ alg: key.alg, kid: key.kid, typ: 'JWT' })}.${encode({
        iss: oauthClient.client_id,
        sub: oauthClient.client_id,
        aud: server.token_endpoint,
        jti: randomUUID(),
        iat: now,
        nbf: now,
        exp: now + 300,
      })}`;
      body.set('client_id', oauthClient.client_id);
      body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      body.set('client_assertion', `${signingInput}.${await signer.sign(key, signingInput)}`);
    };
    return clientAuth;
  }

  /**
   * RFC 7523 client authentication with an assertion the client did not sign: STS's JWT for the function's role.
   * Its iss and sub are the AWS issuer and the role, not the client id: the provider maps them to the client
   * (Entra ID's federated identity credential), and client_id says which client that is.
   */
  private webIdentityClientAuth(webIdentity: { audience: string; algorithm: WebIdentitySigningAlgorithm }) {
    const minter = this.options.webIdentity;
    if (minter === undefined) throw new BrokerError('server_error', 'the broker was built without an STS client');
    const clientAuth: oauth.ClientAuth = async (_server, oauthClient, body) => {
      body.set('client_id', oauthClient.client_id);
      body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      body.set('client_assertion', await minter.assertionFor(webIdentity.audience, webIdentity.algorithm));
    };
    return clientAuth;
  }

  /**
   * Imported once per key, non-extractable: the same credentials object is returned while the secret is cached.
   * The algorithm is the key's `alg` (assertionAlgorithmOf), which oauth4webapi reads back off the CryptoKey.
   */
  private signingKey(jwk: PrivateJwk): Promise<webcrypto.CryptoKey> {
    let key = this.signingKeys.get(jwk);
    if (key === undefined) {
      const { alg: _alg, key_ops: _ops, use: _use, x5c: _chain, 'x5t#S256': _thumbprint, ...material } = jwk;
      key = webcrypto.subtle.importKey('jwk', material, webCryptoAlgorithmOf(assertionAlgorithmOf(jwk)), false, [
        'sign',
      ]);
      this.signingKeys.set(jwk, key);
    }
    return key;
  }

  /** Every request of one exchange ends by its deadline: discovery and the token request share one budget. */
  private httpOptions(url: string, deadline: number | undefined) {
    const insecure = this.options.allowLoopbackHttp === true && isLoopbackUrl(url);
    const fetchBy: typeof this.fetch = (input, init) => this.fetch(input, init, deadline);
    const options: { [oauth.customFetch]: typeof fetchBy; [oauth.allowInsecureRequests]?: boolean } = {
      [oauth.customFetch]: fetchBy,
    };
    if (insecure) options[oauth.allowInsecureRequests] = true;
    return options;
  }

  /** Cached per container; the last good document is kept when a refetch fails. */
  private async discover(
    clientName: string,
    client: ClientConfig,
    deadline: number | undefined,
  ): Promise<oauth.AuthorizationServer> {
    if (client.tokenEndpoint !== undefined) {
      // No metadata: the registry's endpoint, and RFC 8414's defaults (client_secret_basic) for the rest.
      return { issuer: new URL(client.tokenEndpoint).origin, token_endpoint: client.tokenEndpoint };
    }
    const location = providerKeyOf(client);
    const known = this.discovered.get(location);
    if (known !== undefined && this.options.clock.now() - known.fetchedAt < this.discoveryMaxAgeMs) return known.server;

    const pending = this.discovering.run(location, () => this.fetchDiscovery(clientName, client, deadline));
    try {
      return await pending;
    } catch (error) {
      if (known === undefined) throw error;
      this.options.logger.warn('discovery refetch failed; using the last good document', {
        client: clientName,
        errorCode: error instanceof BrokerError ? error.code : 'server_error',
      });
      return known.server;
    }
  }

  private async fetchDiscovery(
    clientName: string,
    client: ClientConfig,
    deadline: number | undefined,
  ): Promise<oauth.AuthorizationServer> {
    const wellKnownUrl = providerKeyOf(client);
    const { issuer, algorithm } = discoveryLocation(wellKnownUrl);
    let server: oauth.AuthorizationServer;
    try {
      if (algorithm === 'smart') {
        server = await this.fetchSmartConfiguration(wellKnownUrl, issuer, deadline);
      } else {
        const response = await this.traced('discovery', () =>
          oauth.discoveryRequest(issuer, { algorithm, ...this.httpOptions(issuer.href, deadline) }),
        );
        // Strict: the document must name exactly the issuer its location implies.
        server = await oauth.processDiscoveryResponse(issuer, response);
      }
    } catch (error) {
      throw translateUpstreamError(error, clientName, 'discovery');
    }
    const tokenEndpoint = server.token_endpoint;
    if (typeof tokenEndpoint !== 'string' || !isAcceptableEndpoint(tokenEndpoint, this.options.allowLoopbackHttp)) {
      throw new BrokerError(
        'upstream_error',
        `the discovery document of client ${clientName} does not name an https token_endpoint`,
      );
    }
    this.discovered.set(wellKnownUrl, { server, fetchedAt: this.options.clock.now() });
    return server;
  }

  /**
   * A SMART configuration (SMART App Launch 2, section 2.1) is not RFC 8414 metadata, and oauth4webapi does not
   * read it: only what the exchange needs is taken from it, the token endpoint and the methods it accepts.
   */
  private async fetchSmartConfiguration(
    wellKnownUrl: string,
    base: URL,
    deadline: number | undefined,
  ): Promise<oauth.AuthorizationServer> {
    const fetchBy = this.httpOptions(wellKnownUrl, deadline)[oauth.customFetch];
    const response = await this.traced('discovery', () =>
      fetchBy(wellKnownUrl, { method: 'GET', headers: { accept: 'application/json' } }),
    );
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new SmartConfigurationError(`answered HTTP ${response.status}`);
    }
    const document: unknown = await response.json().catch(() => undefined);
    if (typeof document !== 'object' || document === null || Array.isArray(document)) {
      throw new SmartConfigurationError('is not a JSON object');
    }
    const { token_endpoint: tokenEndpoint, token_endpoint_auth_methods_supported: methods } = document as Record<
      string,
      unknown
    >;
    return {
      issuer: base.href,
      ...(typeof tokenEndpoint === 'string' ? { token_endpoint: tokenEndpoint } : {}),
      ...(Array.isArray(methods) && methods.every((method) => typeof method === 'string')
        ? { token_endpoint_auth_methods_supported: methods }
        : {}),
    };
  }
}

/** A SMART configuration the broker cannot use; its message is the broker's own words, never the document's. */
class SmartConfigurationError extends Error {}

/** RFC 8414: with no list of supported methods, client_secret_basic is the default. */
function authMethodFor(client: ClientConfig, server: oauth.AuthorizationServer) {
  if (client.authMethod !== undefined) return client.authMethod;
  return server.token_endpoint_auth_methods_supported?.includes('client_secret_post')
    ? 'client_secret_post'
    : 'client_secret_basic';
}

function isLoopbackUrl(value: string): boolean {
  try {
    return isLoopbackHost(new URL(value).hostname);
  } catch {
    return false;
  }
}

function isAcceptableEndpoint(value: string, allowLoopbackHttp = false): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  return url.protocol === 'https:' || (allowLoopbackHttp && url.protocol === 'http:' && isLoopbackHost(url.hostname));
}

function validateTokenResponse(raw: unknown, client: ClientConfig, clientName: string, now: number): IssuedToken {
  const invalid = (what: string) =>
    new BrokerError('upstream_error', `the token endpoint of client ${clientName} answered ${what}`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw invalid('with something other than a JSON object');
  const body = raw as Record<string, unknown>;
  if (typeof body.access_token !== 'string' || body.access_token === '') throw invalid('without an access_token');
  if (typeof body.token_type !== 'string' || body.token_type.toLowerCase() !== 'bearer') {
    throw invalid('with a token_type other than Bearer');
  }
  if (body.scope !== undefined && typeof body.scope !== 'string') throw invalid('with a scope that is not a string');
  return {
    accessToken: body.access_token,
    tokenType: 'Bearer',
    expiresIn: lifetimeOf(body, client, now, invalid),
    scope: body.scope,
  };
}

/**
 * expires_in must be a positive whole number of seconds. Some servers omit it (and token managers that
 * trust its absence stop refreshing): then the JWT's exp claim, else the client's defaultExpiresIn.
 */
function lifetimeOf(
  body: Record<string, unknown>,
  client: ClientConfig,
  now: number,
  invalid: (what: string) => BrokerError,
): number {
  const expiresIn = body.expires_in;
  if (expiresIn !== undefined) {
    if (
      typeof expiresIn !== 'number' ||
      !Number.isInteger(expiresIn) ||
      expiresIn <= 0 ||
      expiresIn > maxExpiresInSeconds
    ) {
      throw invalid(`with an expires_in that is not a whole number of seconds between 1 and ${maxExpiresInSeconds}`);
    }
    return expiresIn;
  }
  const exp = jwtExpiry(body.access_token as string);
  if (exp !== undefined) {
    const remaining = Math.floor(exp - now / 1000);
    if (remaining <= 0 || remaining > maxExpiresInSeconds)
      throw invalid('without expires_in and with a JWT whose exp is unusable');
    return remaining;
  }
  if (client.defaultExpiresIn !== undefined) return client.defaultExpiresIn;
  throw invalid('without expires_in, the token is not a JWT with exp, and the client has no defaultExpiresIn');
}

/** The exp claim of a JWT access token, read without verification: it only bounds how long the broker keeps it. */
function jwtExpiry(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[1] === undefined) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    const exp = (claims as { exp?: unknown } | null)?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The one place where upstream failures become broker errors. Upstream bodies, which can hold a token,
 * are never carried into the broker error: only the OAuth error code survives.
 */
export function translateUpstreamError(error: unknown, clientName: string, stage: Stage): BrokerError {
  const what =
    stage === 'discovery'
      ? `the discovery document of client ${clientName}`
      : `the token endpoint of client ${clientName}`;
  if (error instanceof BrokerError) return error;
  if (error instanceof SmartConfigurationError) return new BrokerError('upstream_error', `${what} ${error.message}`);
  if (error instanceof UpstreamTimeoutError)
    return new BrokerError('upstream_timeout', `${what} did not answer in time`);
  if (error instanceof ResponseTooLargeError)
    return new BrokerError('upstream_error', `${what} answered with an oversized body`);
  if (error instanceof oauth.ResponseBodyError) return refused(what, error.response, error.error);
  if (error instanceof oauth.WWWAuthenticateChallengeError) {
    const sent = error.cause.find((challenge) => typeof challenge.parameters.error === 'string')?.parameters.error;
    return refused(what, error.response, sent);
  }
  if (error instanceof oauth.OperationProcessingError || error instanceof oauth.UnsupportedOperationError) {
    const response = error.cause instanceof Response ? error.cause : undefined;
    const status = response?.status;
    const detail =
      error.code === oauth.JSON_ATTRIBUTE_COMPARISON
        ? 'names a different issuer'
        : status !== undefined && status !== 200
          ? `answered HTTP ${status}`
          : 'is not a valid answer';
    return new BrokerError('upstream_error', `${what} ${detail}`, response === undefined ? {} : answerOf(response));
  }
  if (error instanceof TypeError && (error as { code?: unknown }).code === undefined) {
    // fetch reports network failures (refused, reset, DNS, TLS) as a bare TypeError.
    return new BrokerError('unavailable', `${what} could not be reached`, { upstreamUnreachable: true });
  }
  if (error instanceof TypeError) return new BrokerError('upstream_error', `${what} is not a valid answer`);
  return new BrokerError('server_error', 'the broker failed unexpectedly', { cause: error });
}

/**
 * The error code the server sent is passed on only when it is a plain code (`[A-Za-z0-9_.-]{1,64}`), as every
 * registered OAuth error code is; anything else is dropped whole and only the status is reported.
 */
function refused(what: string, response: Response, sent: string | undefined): BrokerError {
  const code = plainCode(sent);
  const status = response.status;
  return new BrokerError('upstream_error', `${what} refused the request (HTTP ${status})${code ? `: ${code}` : ''}`, {
    ...(code === undefined ? {} : { upstreamError: code }),
    ...answerOf(response),
  });
}

/** The status and Retry-After of a provider's answer: what the broker's cooldown goes by. */
function answerOf(response: Response): { upstreamStatus: number; upstreamRetryAfterMs?: number } {
  const retryAfter = retryAfterMs(response.headers.get('retry-after'), Date.now());
  return { upstreamStatus: response.status, ...(retryAfter === undefined ? {} : { upstreamRetryAfterMs: retryAfter }) };
}

/**
 * The JWS algorithm of a client assertion signed with this key: its `alg` when it names one the broker signs
 * with (secrets-manager.ts refuses any other), otherwise RS384 for RSA and ES384 or ES256 by curve, the SMART
 * Backend Services defaults.
 */
export function assertionAlgorithmOf(jwk: { kty?: unknown; crv?: unknown; alg?: unknown }): AssertionAlgorithm {
  if (typeof jwk.alg === 'string' && (assertionAlgorithms as readonly string[]).includes(jwk.alg)) {
    return jwk.alg as AssertionAlgorithm;
  }
  if (jwk.kty === 'EC') return jwk.crv === 'P-256' ? 'ES256' : 'ES384';
  return 'RS384';
}

function webCryptoAlgorithmOf(alg: AssertionAlgorithm): webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams {
  const hash = `SHA-${alg.slice(2)}`;
  if (alg.startsWith('RS')) return { name: 'RSASSA-PKCS1-v1_5', hash };
  if (alg.startsWith('PS')) return { name: 'RSA-PSS', hash };
  return { name: 'ECDSA', namedCurve: alg === 'ES256' ? 'P-256' : 'P-384' };
}

/** The key's certificate thumbprint (RFC 7515 x5t#S256): given as such, or taken from the first x5c certificate. */
function certificateThumbprintOf(jwk: PrivateJwk): string | undefined {
  const given = jwk['x5t#S256'];
  if (typeof given === 'string' && given !== '') return given;
  const first = Array.isArray(jwk.x5c) ? jwk.x5c[0] : undefined;
  if (typeof first !== 'string') return undefined;
  return createHash('sha256').update(Buffer.from(first, 'base64')).digest('base64url');
}
