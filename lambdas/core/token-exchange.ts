import type { ClientConfig } from './config.js';
import { BrokerError } from './errors.js';
import type { IssuanceGate } from './issuance-gate.js';
import type {
  BrokerLogger,
  BrokerMetrics,
  CachedToken,
  ClientCredentials,
  Clock,
  IssuedToken,
  SecretSource,
  TokenEndpoint,
} from './ports.js';
import { normalizeScope, scopesOutside } from './scope.js';
import { secretMaterialOf } from './sealing.js';
import type { TokenParameters } from './token-parameters.js';

/** What one exchange asks the token endpoint for. */
export interface ExchangeTarget {
  clientName: string;
  client: ClientConfig;
  /** Normalized, never empty. */
  scopes: string[];
  parameters: TokenParameters;
}

export interface TokenExchangeOptions {
  secrets: SecretSource;
  endpoint: TokenEndpoint;
  /** Every call to the endpoint, retries included, is taken from the client's hourly budget first. */
  issuance: Pick<IssuanceGate, 'take'>;
  clock: Clock;
  metrics: BrokerMetrics;
  logger: BrokerLogger;
}

/**
 * One exchange with a client's token endpoint, for the lease holder: the call and its metrics, the check of the
 * scope granted, and the retries a secret rotation calls for.
 */
export class TokenExchange {
  private readonly secrets: SecretSource;
  private readonly endpoint: TokenEndpoint;
  private readonly issuance: Pick<IssuanceGate, 'take'>;
  private readonly clock: Clock;
  private readonly metrics: BrokerMetrics;
  private readonly logger: BrokerLogger;

  constructor(options: TokenExchangeOptions) {
    this.secrets = options.secrets;
    this.endpoint = options.endpoint;
    this.issuance = options.issuance;
    this.clock = options.clock;
    this.metrics = options.metrics;
    this.logger = options.logger;
  }

  /**
   * An invalid_client answer may mean a rotation is under way: the secret re-read (it may have just become
   * current), then the rotation's pending and previous secrets, each tried once. The token is sealed under the
   * current secret whichever one the provider took, since that is what every container reads: the credentials
   * resolved with it are those to seal under.
   */
  async fetch(
    target: ExchangeTarget,
    credentials: ClientCredentials,
    deadline: number,
  ): Promise<{ token: CachedToken; credentials: ClientCredentials }> {
    try {
      return { token: await this.call(target, credentials, deadline), credentials };
    } catch (error) {
      if (!isInvalidClient(error)) throw error;
      const reread = await this.secrets.getCredentials(target.clientName, target.client, { refresh: true });
      const tried = [credentials];
      if (!sameCredentials(reread, credentials)) {
        // The retry belongs to the same budget: past its deadline the lease may be someone else's.
        if (this.clock.now() >= deadline) throw error;
        this.metrics.count('SecretReloads', target.clientName);
        this.logger.info('token endpoint refused the client; retrying with the re-read secret', {
          client: target.clientName,
        });
        try {
          return { token: await this.call(target, reread, deadline), credentials: reread };
        } catch (retryError) {
          if (!isInvalidClient(retryError)) throw retryError;
          tried.push(reread);
        }
      }
      const rotation = await this.secrets.getRotationCredentials(target.clientName, target.client);
      for (const { stage, credentials: candidate } of rotation) {
        if (tried.some((done) => sameCredentials(done, candidate))) continue;
        if (this.clock.now() >= deadline) break;
        tried.push(candidate);
        try {
          const token = await this.call(target, candidate, deadline);
          this.metrics.count('SecretFallbacks', target.clientName);
          this.logger.warn(
            stage === 'pending'
              ? "token endpoint took the client's pending secret, not its current one: finish the rotation"
              : "token endpoint took the client's previous secret, not its current one: the provider has not taken the new secret yet",
            { client: target.clientName, secretStage: stage },
          );
          return { token, credentials: reread };
        } catch (fallbackError) {
          if (!isInvalidClient(fallbackError)) throw fallbackError;
        }
      }
      throw error;
    }
  }

  private async call(target: ExchangeTarget, credentials: ClientCredentials, deadline: number): Promise<CachedToken> {
    // Lifetime counts from before the request is sent, so the broker never believes a token lives longer than it does.
    await this.issuance.take(target.clientName, target.client);
    const issuedAt = this.clock.now();
    this.metrics.count('TokenEndpointCalls', target.clientName);
    let issued: IssuedToken;
    try {
      issued = await this.endpoint.fetchToken({
        clientName: target.clientName,
        client: target.client,
        credentials,
        scope: target.scopes.join(' '),
        ...target.parameters,
        deadline,
      });
    } catch (error) {
      this.metrics.count('TokenEndpointFailures', target.clientName);
      throw error;
    } finally {
      this.metrics.upstreamLatency(this.clock.now() - issuedAt, target.clientName);
    }
    this.checkGrantedScope(target, issued.scope);
    return {
      accessToken: issued.accessToken,
      tokenType: 'Bearer',
      // RFC 6749 section 5.1: an omitted scope means the requested scope was granted as asked.
      scope: issued.scope ?? target.scopes.join(' '),
      issuedAt,
      expiresAt: issuedAt + issued.expiresIn * 1000,
    };
  }

  /**
   * A token carrying a scope the client is not configured for is refused, whatever the server meant by it:
   * the broker hands out nothing beyond the registry. The server's scope string is not repeated (it is not ours
   * to echo); an omitted scope means the request was granted as asked (RFC 6749 section 5.1).
   */
  private checkGrantedScope(target: ExchangeTarget, granted: string | undefined): void {
    if (granted === undefined) return;
    const outside = scopesOutside(normalizeScope(granted), target.client.scopes).length;
    if (outside === 0) return;
    this.metrics.count('TokenEndpointFailures', target.clientName);
    this.logger.warn('token endpoint granted scopes outside the client configuration; token refused', {
      client: target.clientName,
      scopesOutside: outside,
    });
    throw new BrokerError(
      'upstream_error',
      `the token endpoint of client ${target.clientName} granted ${outside} scope${outside === 1 ? '' : 's'} ` +
        "outside the client's configured scopes; the token was refused",
    );
  }
}

function isInvalidClient(error: unknown): boolean {
  return error instanceof BrokerError && error.upstreamError === 'invalid_client';
}

function sameCredentials(a: ClientCredentials, b: ClientCredentials): boolean {
  return a.clientId === b.clientId && secretMaterialOf(a) === secretMaterialOf(b);
}
