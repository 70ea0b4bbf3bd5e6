import type { ClientConfig } from '../core/config.js';
import { BrokerError } from '../core/errors.js';
import type { ClientCredentials, RotationCredentials, SealingKeySource, SecretSource } from '../core/ports.js';

/** Secrets held in memory by secret name: the local dev server's stand-in for Secrets Manager. */
export class StaticSecretSource implements SecretSource {
  constructor(private readonly secrets: ReadonlyMap<string, ClientCredentials>) {}

  async getCredentials(clientName: string, client: ClientConfig): Promise<ClientCredentials> {
    const credentials = this.secrets.get(client.secretName);
    if (credentials === undefined)
      throw new BrokerError('unavailable', `the secret of client ${clientName} does not exist`);
    return credentials;
  }

  /** Generated at each start, never rotated. */
  async getRotationCredentials(): Promise<RotationCredentials[]> {
    return [];
  }
}

/** A sealing key held in memory: the local dev server's, generated at each start (its table lives as long). */
export class StaticSealingKeySource implements SealingKeySource {
  constructor(private readonly key: Uint8Array) {}

  async getSealingKey(): Promise<Uint8Array> {
    return this.key;
  }
}
