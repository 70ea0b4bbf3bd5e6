import * as oauth from 'oauth4webapi';
import { type ClientConfig, discoveryLocation, isLoopbackHost } from '../core/config.js';
import { BrokerError } from '../core/errors.js';
import type { BrokerLogger, Clock, IssuedToken, TokenEndpoint, TokenRequest } from '../core/ports.js';

export const defaultDiscoveryMaxAgeMs = 60 * 60_000;
export const defaultUpstreamTimeoutMs = 8_000;

export interface OAuthTokenEndpointOptions {
  clock: Clock;
  logger: BrokerLogger;
  /** Plain http to loopback hosts, for the local dev server only. */
  allowLoopbackHttp?: boolean;
  /** Budget for one discovery or token request, well inside API Gateway's 29 s. */
  timeoutMs?: number;
  discoveryMaxAgeMs?: number;
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
  private readonly discovering = new Map<string, Promise<oauth.AuthorizationServer>>();
  private readonly timeoutMs: number;
  private readonly discoveryMaxAgeMs: number;

  constructor(private readonly options: OAuthTokenEndpointOptions) {
    this.timeoutMs = options.timeoutMs ?? defaultUpstreamTimeoutMs;
    this.discoveryMaxAgeMs = options.discoveryMaxAgeMs ?? defaultDiscoveryMaxAgeMs;
  }

  async fetchToken(request: TokenRequest): Promise<IssuedToken> {
    const { clientName, client, credentials } = request;
    const server = await this.discover(clientName, client);
    const clientAuth =
      authMethodFor(client, server) === 'client_secret_post'
        ? oauth.ClientSecretPost(credentials.clientSecret)
        : oauth.ClientSecretBasic(credentials.clientSecret);
    const oauthClient: oauth.Client = { client_id: credentials.clientId };
    const parameters = new URLSearchParams();
    if (request.scope !== '') parameters.set('scope', request.scope);

    let result: oauth.TokenEndpointResponse;
    try {
      const response = await oauth.clientCredentialsGrantRequest(server, oauthClient, clientAuth, parameters, {
        ...this.httpOptions(server.token_endpoint ?? ''),
      });
      result = await oauth.processClientCredentialsResponse(server, oauthClient, response);
    } catch (error) {
      throw translateUpstreamError(error, clientName, 'token');
    }
    return validateTokenResponse(result, clientName);
  }

  private httpOptions(url: string): { signal: AbortSignal; [oauth.allowInsecureRequests]?: boolean } {
    const insecure = this.options.allowLoopbackHttp === true && isLoopbackUrl(url);
    return {
      signal: AbortSignal.timeout(this.timeoutMs),
      ...(insecure ? { [oauth.allowInsecureRequests]: true } : {}),
    };
  }

  /** Cached per container; the last good document is kept when a refetch fails. */
  private async discover(clientName: string, client: ClientConfig): Promise<oauth.AuthorizationServer> {
    const known = this.discovered.get(client.wellKnownUrl);
    if (known !== undefined && this.options.clock.now() - known.fetchedAt < this.discoveryMaxAgeMs) return known.server;

    let pending = this.discovering.get(client.wellKnownUrl);
    if (pending === undefined) {
      pending = this.fetchDiscovery(clientName, client).finally(() => this.discovering.delete(client.wellKnownUrl));
      this.discovering.set(client.wellKnownUrl, pending);
    }
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

  private async fetchDiscovery(clientName: string, client: ClientConfig): Promise<oauth.AuthorizationServer> {
    const { issuer, algorithm } = discoveryLocation(client.wellKnownUrl);
    let server: oauth.AuthorizationServer;
    try {
      const response = await oauth.discoveryRequest(issuer, { algorithm, ...this.httpOptions(issuer.href) });
      server = await oauth.processDiscoveryResponse(issuer, response);
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
    this.discovered.set(client.wellKnownUrl, { server, fetchedAt: this.options.clock.now() });
    return server;
  }
}

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

function validateTokenResponse(result: oauth.TokenEndpointResponse, clientName: string): IssuedToken {
  const invalid = (what: string) =>
    new BrokerError('upstream_error', `the token endpoint of client ${clientName} answered ${what}`);
  if (typeof result.access_token !== 'string' || result.access_token === '') throw invalid('without an access_token');
  if (result.token_type !== 'bearer') throw invalid('with a token_type other than Bearer');
  const expiresIn = result.expires_in;
  if (typeof expiresIn !== 'number' || !Number.isInteger(expiresIn) || expiresIn <= 0) {
    throw invalid('without a positive integer expires_in');
  }
  if (result.scope !== undefined && typeof result.scope !== 'string')
    throw invalid('with a scope that is not a string');
  return { accessToken: result.access_token, tokenType: 'Bearer', expiresIn, scope: result.scope };
}

// The error code the server sent is passed on only when it is a plain OAuth error code.
const oauthErrorCode = /^[\x20-\x21\x23-\x5B\x5D-\x7E]{1,64}$/;

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
  if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return new BrokerError('upstream_timeout', `${what} did not answer in time`);
  }
  if (error instanceof oauth.ResponseBodyError) {
    const code = oauthErrorCode.test(error.error) ? `: ${error.error}` : '';
    return new BrokerError('upstream_error', `${what} refused the request (HTTP ${error.status})${code}`);
  }
  if (error instanceof oauth.WWWAuthenticateChallengeError) {
    const sent = error.cause.find((challenge) => typeof challenge.parameters.error === 'string')?.parameters.error;
    const code = sent !== undefined && oauthErrorCode.test(sent) ? `: ${sent}` : '';
    return new BrokerError('upstream_error', `${what} refused the request (HTTP ${error.status})${code}`);
  }
  if (error instanceof oauth.OperationProcessingError || error instanceof oauth.UnsupportedOperationError) {
    const detail =
      error.code === oauth.JSON_ATTRIBUTE_COMPARISON ? 'names a different issuer' : 'is not a valid answer';
    return new BrokerError('upstream_error', `${what} ${detail}`);
  }
  if (error instanceof TypeError && (error as { code?: unknown }).code === undefined) {
    // fetch reports network failures (refused, reset, DNS, TLS) as a bare TypeError.
    return new BrokerError('unavailable', `${what} could not be reached`);
  }
  if (error instanceof TypeError) {
    return new BrokerError('upstream_error', `${what} is not a valid answer`);
  }
  return new BrokerError('server_error', 'the broker failed unexpectedly', { cause: error });
}
