import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { runtimeSettings } from '../contract.js';
import { type ClientConfig, defaultWebIdentitySigningAlgorithm } from '../core/config.js';
import { plainCode } from '../core/echo.js';
import { BrokerError } from '../core/errors.js';
import {
  assertionAlgorithms,
  type BrokerLogger,
  type ClientCredentials,
  type Clock,
  type PrivateJwk,
  type RotationCredentials,
  type SealingKeySource,
  type SecretReadOptions,
  type SecretSource,
} from '../core/ports.js';
import { minSealingKeyBytes } from '../core/sealing.js';
import { SingleFlight } from '../core/single-flight.js';

/** How long a secret is reused when the deployment sets no secretMaxAgeSeconds (the contract's default). */
export const defaultSecretMaxAgeMs = runtimeSettings.secretMaxAgeSeconds.default * 1000;

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
      secretString = await readSecretString(this.client, client.secretName);
    } catch (error) {
      const name = errorNameOf(error);
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

  /**
   * The AWSPENDING and AWSPREVIOUS versions, read only when the provider refused the current one: a rotation
   * that reached the provider before Secrets Manager (pending) or after it (previous) loses no request.
   */
  async getRotationCredentials(clientName: string, client: ClientConfig): Promise<RotationCredentials[]> {
    const stages = [
      { stage: 'pending', versionStage: 'AWSPENDING' },
      { stage: 'previous', versionStage: 'AWSPREVIOUS' },
    ] as const;
    const read = await Promise.all(
      stages.map(async ({ stage, versionStage }): Promise<RotationCredentials | undefined> => {
        try {
          const value = await readSecretString(this.client, client.secretName, versionStage);
          return { stage, credentials: parseCredentials(clientName, client, value) };
        } catch (error) {
          // No such version is the usual case; any other failure leaves the fallback out, and is said.
          const name = error instanceof BrokerError ? 'malformed' : errorNameOf(error);
          if (name !== 'ResourceNotFoundException') {
            this.logger.warn('rotation secret not usable; not tried', { client: clientName, stage, errorName: name });
          }
          return undefined;
        }
      }),
    );
    return read.filter((entry) => entry !== undefined);
  }
}

/**
 * The deployment's sealing key: the string value of the secret the stack generates (TOKEN_BROKER_SEALING_SECRET_ARN),
 * its UTF-8 bytes the key material. Kept and re-read like client secrets (a rotated sealing key is picked up
 * within the same bounded time), the last good value reused while Secrets Manager fails, and one read shared by
 * the concurrent requests of a cold container.
 */
export class SecretsManagerSealingKeySource implements SealingKeySource {
  private remembered: { key: Uint8Array; readAt: number } | undefined;
  private readonly reads = new SingleFlight<'sealing-key', Uint8Array>();

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly secretId: string,
    private readonly clock: Clock,
    private readonly logger: BrokerLogger,
    private readonly maxAgeMs = defaultSecretMaxAgeMs,
  ) {}

  getSealingKey(): Promise<Uint8Array> {
    const known = this.remembered;
    if (known !== undefined && this.clock.now() - known.readAt < this.maxAgeMs) return Promise.resolve(known.key);
    return this.reads.run('sealing-key', () => this.read(known));
  }

  private async read(known: { key: Uint8Array } | undefined): Promise<Uint8Array> {
    let value: string | undefined;
    try {
      value = await readSecretString(this.client, this.secretId);
    } catch (error) {
      const name = errorNameOf(error);
      if (known !== undefined) {
        this.logger.warn('sealing key read failed; using the last value read', { errorName: name });
        return known.key;
      }
      const what =
        name === 'ResourceNotFoundException' ? 'does not exist' : `could not be read from Secrets Manager (${name})`;
      throw new BrokerError('unavailable', `the token sealing key ${what}`);
    }
    const key = Buffer.from(value ?? '', 'utf8');
    if (key.length < minSealingKeyBytes) {
      throw new BrokerError(
        'unavailable',
        `the token sealing key must be a string of at least ${minSealingKeyBytes} bytes`,
      );
    }
    this.remembered = { key, readAt: this.clock.now() };
    return key;
  }
}

async function readSecretString(
  client: SecretsManagerClient,
  secretId: string,
  versionStage?: string,
): Promise<string | undefined> {
  const output = await client.send(
    new GetSecretValueCommand({
      SecretId: secretId,
      ...(versionStage === undefined ? {} : { VersionStage: versionStage }),
    }),
  );
  return output.SecretString;
}

/** The SDK names a service error after the error type on the wire: the answer's text, so echoed only when plain. */
function errorNameOf(error: unknown): string {
  return (error instanceof Error ? plainCode(error.name) : undefined) ?? 'Error';
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
        ? `the secret of client ${clientName} must be a JSON object with client_id and private_key_jwk (an RSA or EC P-256/P-384 private JWK with kid, and an alg of RS256, RS384, PS256, PS384, ES256 or ES384 if any)`
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
  if (client.signingKeyArn !== undefined) {
    // The key is in KMS: a private key here as well would be a second copy of it, or a different key.
    if (jwk !== undefined || clientSecret !== undefined) {
      throw new BrokerError(
        'unavailable',
        `the secret of client ${clientName} must hold only client_id: the client signs with its KMS key (signingKeyArn)`,
      );
    }
    return { clientId, kmsKeyArn: client.signingKeyArn };
  }
  if (client.webIdentityAudience !== undefined) {
    if (jwk !== undefined || clientSecret !== undefined) {
      throw new BrokerError(
        'unavailable',
        `the secret of client ${clientName} must hold only client_id: AWS STS signs the client's assertions (webIdentityAudience)`,
      );
    }
    return {
      clientId,
      webIdentity: {
        audience: client.webIdentityAudience,
        algorithm: client.webIdentitySigningAlgorithm ?? defaultWebIdentitySigningAlgorithm,
      },
    };
  }
  if (!usesKey) {
    if (typeof clientSecret !== 'string' || clientSecret === '') throw malformed();
    return { clientId, clientSecret };
  }
  if (!isPrivateJwk(jwk)) throw malformed();
  return { clientId, privateKeyJwk: jwk };
}

/**
 * An RSA or EC (P-256, P-384) private JWK with its kid, whose `alg`, when given, is one the broker signs with and
 * fits the key: RS256/RS384/PS256/PS384 for RSA, ES256 for P-256, ES384 for P-384.
 */
function isPrivateJwk(value: unknown): value is PrivateJwk {
  if (typeof value !== 'object' || value === null) return false;
  const jwk = value as Record<string, unknown>;
  if (typeof jwk.kid !== 'string' || jwk.kid === '' || typeof jwk.d !== 'string') return false;
  const ec = jwk.kty === 'EC' && (jwk.crv === 'P-256' || jwk.crv === 'P-384');
  if (jwk.kty !== 'RSA' && !ec) return false;
  if (jwk.alg === undefined) return true;
  if (typeof jwk.alg !== 'string' || !(assertionAlgorithms as readonly string[]).includes(jwk.alg)) return false;
  return jwk.kty === 'RSA' ? /^[RP]S/.test(jwk.alg) : jwk.alg === (jwk.crv === 'P-256' ? 'ES256' : 'ES384');
}
