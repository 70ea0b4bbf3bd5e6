import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { ClientConfig } from '../core/config.js';
import { plainCode } from '../core/echo.js';
import { BrokerError } from '../core/errors.js';
import type {
  BrokerLogger,
  ClientCredentials,
  Clock,
  PrivateJwk,
  SecretReadOptions,
  SecretSource,
} from '../core/ports.js';

export const defaultSecretMaxAgeMs = 5 * 60_000;

interface Remembered {
  credentials: ClientCredentials;
  readAt: number;
}

/**
 * Reads `{"client_id", "client_secret"}` secrets from Secrets Manager. Each secret is kept for a bounded
 * time, so a rotated secret is picked up without a redeploy, and the last good value is reused while
 * Secrets Manager fails.
 */
export class SecretsManagerSecretSource implements SecretSource {
  private readonly remembered = new Map<string, Remembered>();

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly clock: Clock,
    private readonly logger: BrokerLogger,
    private readonly maxAgeMs = defaultSecretMaxAgeMs,
  ) {}

  async getCredentials(
    clientName: string,
    client: ClientConfig,
    options?: SecretReadOptions,
  ): Promise<ClientCredentials> {
    const known = this.remembered.get(client.secretName);
    const fresh = known !== undefined && this.clock.now() - known.readAt < this.maxAgeMs;
    if (fresh && options?.refresh !== true) return known.credentials;

    let secretString: string | undefined;
    try {
      const output = await this.client.send(new GetSecretValueCommand({ SecretId: client.secretName }));
      secretString = output.SecretString;
    } catch (error) {
      // The SDK names a service error after the error type on the wire: the answer's text, so echoed only when plain.
      const name = (error instanceof Error ? plainCode(error.name) : undefined) ?? 'Error';
      if (known !== undefined) {
        this.logger.warn('secret read failed; using the last value read', { client: clientName, errorName: name });
        return known.credentials;
      }
      const what =
        name === 'ResourceNotFoundException' ? 'does not exist' : `could not be read from Secrets Manager (${name})`;
      throw new BrokerError('unavailable', `the secret of client ${clientName} ${what}`);
    }

    const credentials = parseCredentials(clientName, client, secretString);
    this.remembered.set(client.secretName, { credentials, readAt: this.clock.now() });
    return credentials;
  }
}

/**
 * `{"client_id", "client_secret"}`, or for private_key_jwt `{"client_id", "private_key_jwk"}` with an RSA
 * or EC P-384 private JWK carrying its kid. Never echoes the secret's value: a malformed secret is named, not shown.
 */
function parseCredentials(
  clientName: string,
  client: ClientConfig,
  secretString: string | undefined,
): ClientCredentials {
  const usesKey = client.authMethod === 'private_key_jwt';
  const malformed = () =>
    new BrokerError(
      'unavailable',
      usesKey
        ? `the secret of client ${clientName} must be a JSON object with client_id and private_key_jwk (an RSA or EC P-384 private JWK with kid)`
        : `the secret of client ${clientName} must be a JSON object with non-empty string fields client_id and client_secret`,
    );
  let value: unknown;
  try {
    value = JSON.parse(secretString ?? '');
  } catch {
    throw malformed();
  }
  if (typeof value !== 'object' || value === null) throw malformed();
  const { client_id: clientId, client_secret: clientSecret, private_key_jwk: jwk } = value as Record<string, unknown>;
  if (typeof clientId !== 'string' || clientId === '') throw malformed();
  if (!usesKey) {
    if (typeof clientSecret !== 'string' || clientSecret === '') throw malformed();
    return { clientId, clientSecret };
  }
  if (!isPrivateJwk(jwk)) throw malformed();
  return { clientId, privateKeyJwk: jwk };
}

function isPrivateJwk(value: unknown): value is PrivateJwk {
  if (typeof value !== 'object' || value === null) return false;
  const jwk = value as Record<string, unknown>;
  if (typeof jwk.kid !== 'string' || jwk.kid === '' || typeof jwk.d !== 'string') return false;
  return jwk.kty === 'RSA' || (jwk.kty === 'EC' && jwk.crv === 'P-384');
}
