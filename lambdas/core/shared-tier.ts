import type { CacheSlot } from './cache-slot.js';
import type {
  BrokerLogger,
  BrokerMetrics,
  CachedToken,
  ClientCredentials,
  PutOutcome,
  SealingKeySource,
  StoredToken,
  TokenCache,
} from './ports.js';
import { deriveSealingKey, type SealingKey, seal, sealFormat, secretMaterialOf, unseal } from './sealing.js';

/**
 * What the broker does when the token table fails it: counts SharedCacheErrors, logs the operation, and goes on
 * with what this container has. Every part that reads or writes the table (tokens, leases, revocations,
 * cooldowns, the issuance count) reports through one of these.
 */
export type TableFailureReport = (clientName: string, operation: string, error: unknown) => void;

export function tableFailureReport(metrics: BrokerMetrics, logger: BrokerLogger): TableFailureReport {
  return (clientName, operation, error) => {
    metrics.count('SharedCacheErrors', clientName);
    logger.warn(`token table ${operation} failed; continuing with this container's memory`, {
      client: clientName,
      errorName: error instanceof Error ? error.name : typeof error,
    });
  };
}

/** What seals and opens a key's token in the table: the client's current credentials and the sealing key. */
export interface SealMaterial {
  credentials: ClientCredentials;
  sealingKey: Uint8Array;
}

export interface SharedTierOptions {
  cache: TokenCache;
  sealingKeys: SealingKeySource;
  /** A token issued at or before its client's last known revocation opens as a miss. */
  revocations: { isRevoked(clientName: string, token: CachedToken): boolean };
  reportFailure: TableFailureReport;
}

/**
 * The tokens every container shares, sealed in the table (DynamoDB in production). A table that fails is a
 * miss on read and nothing on write, reported: the broker keeps serving from memory and the endpoint.
 */
export class SharedTier {
  private readonly cache: TokenCache;
  private readonly sealingKeys: SealingKeySource;
  private readonly revocations: SharedTierOptions['revocations'];
  private readonly reportFailure: TableFailureReport;

  constructor(options: SharedTierOptions) {
    this.cache = options.cache;
    this.sealingKeys = options.sealingKeys;
    this.revocations = options.revocations;
    this.reportFailure = options.reportFailure;
  }

  /** The deployment's sealing key; read beside the client's secret, since opening a token takes both. */
  sealingKey(): Promise<Uint8Array> {
    return this.sealingKeys.getSealingKey();
  }

  /** The slot's token, opened: undefined for none, one that does not open, a revoked one, or a failing table. */
  async read(slot: CacheSlot, material: SealMaterial): Promise<CachedToken | undefined> {
    return this.open(slot, material, await this.readSealed(slot));
  }

  /** The slot's item as stored, not yet opened, so that it can be read before the keys that open it are. */
  async readSealed(slot: CacheSlot): Promise<StoredToken | undefined> {
    try {
      return await this.cache.get(slot.key);
    } catch (error) {
      this.reportFailure(slot.clientName, 'read', error);
      return undefined;
    }
  }

  /**
   * A token sealed under another secret or sealing key (rotated since), or in another format, does not open:
   * it is a miss, as is a revoked one.
   */
  open(slot: CacheSlot, material: SealMaterial, stored: StoredToken | undefined): CachedToken | undefined {
    if (stored === undefined || stored.format !== sealFormat) return undefined;
    const token = unseal(sealingKeyOf(slot, material), slot.key, stored.sealed);
    return token === undefined || this.revocations.isRevoked(slot.clientName, token) ? undefined : token;
  }

  /** Offers the token to the table, sealed: what became of it, or undefined when the table failed. */
  async write(slot: CacheSlot, token: CachedToken, material: SealMaterial): Promise<PutOutcome | undefined> {
    try {
      return await this.cache.put(
        slot.key,
        { format: sealFormat, sealed: seal(sealingKeyOf(slot, material), slot.key, token), expiresAt: token.expiresAt },
        { clientName: slot.clientName, issuedAt: token.issuedAt },
      );
    } catch (error) {
      this.reportFailure(slot.clientName, 'write', error);
      return undefined;
    }
  }
}

function sealingKeyOf(slot: CacheSlot, material: SealMaterial): SealingKey {
  return deriveSealingKey(material.sealingKey, slot.key, secretMaterialOf(material.credentials));
}
