import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { ClientConfig } from '../core/config.js';
import { BrokerError } from '../core/errors.js';
import type { BrokerLogger, ClientCredentials, Clock, SecretReadOptions, SecretSource } from '../core/ports.js';

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
      const name = error instanceof Error ? error.name : 'Error';
      if (known !== undefined) {
        this.logger.warn('secret read failed; using the last value read', { client: clientName, errorName: name });
        return known.credentials;
      }
      const what =
        name === 'ResourceNotFoundException' ? 'does not exist' : `could not be read from Secrets Manager (${name})`;
      throw new BrokerError('unavailable', `the secret of client ${clientName} ${what}`);
    }

    const credentials = parseCredentials(clientName, secretString);
    this.remembered.set(client.secretName, { credentials, readAt: this.clock.now() });
    return credentials;
  }
}

/** Never echoes the secret's value: a malformed secret is named, not shown. */
function parseCredentials(clientName: string, secretString: string | undefined): ClientCredentials {
  const malformed = () =>
    new BrokerError(
      'unavailable',
      `the secret of client ${clientName} must be a JSON object with non-empty string fields client_id and client_secret`,
    );
  if (secretString === undefined) throw malformed();
  let value: unknown;
  try {
    value = JSON.parse(secretString);
  } catch {
    throw malformed();
  }
  if (typeof value !== 'object' || value === null) throw malformed();
  const { client_id: clientId, client_secret: clientSecret } = value as Record<string, unknown>;
  if (typeof clientId !== 'string' || clientId === '' || typeof clientSecret !== 'string' || clientSecret === '') {
    throw malformed();
  }
  return { clientId, clientSecret };
}
