import { createCipheriv, createDecipheriv, hkdfSync, type JsonWebKey, randomBytes } from 'node:crypto';

/**
 * Tokens at rest are sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the client's secret
 * material, with the cache key as associated data. A copy of the table yields nothing usable, a sealed
 * token cannot be moved to another key, and a token sealed under a rotated-away secret reads as a miss.
 *
 * Format 1: iv (12 bytes) | ciphertext | tag (16 bytes); the plaintext is JSON of SealedPayload.
 */
export const sealFormat = 1;
const ivBytes = 12;
const tagBytes = 16;
const info = Buffer.from('token-broker/token-seal/v1');
const salt = Buffer.from('token-broker');

export interface SealedPayload {
  accessToken: string;
  tokenType: string;
  scope: string;
  issuedAt: number;
  expiresAt: number;
}

export type SealingKey = Buffer & { readonly brand?: 'SealingKey' };

/** The secret part of a client's credentials: the shared secret, or the private key's private parameters. */
export function secretMaterialOf(credentials: { clientSecret?: string; privateKeyJwk?: JsonWebKey }): string {
  if (credentials.clientSecret !== undefined) return credentials.clientSecret;
  const jwk = credentials.privateKeyJwk ?? {};
  return JSON.stringify([jwk.d, jwk.p, jwk.q]);
}

export function deriveSealingKey(secretMaterial: string): SealingKey {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secretMaterial, 'utf8'), salt, info, 32));
}

export function seal(key: SealingKey, cacheKey: string, payload: SealedPayload): Uint8Array {
  const iv = randomBytes(ivBytes);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: tagBytes });
  cipher.setAAD(Buffer.from(cacheKey, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(payload), 'utf8'), cipher.final()]);
  return Buffer.concat([iv, ciphertext, cipher.getAuthTag()]);
}

/** Undefined for anything that does not open under this key and cache key: never an exception. */
export function unseal(key: SealingKey, cacheKey: string, sealed: Uint8Array): SealedPayload | undefined {
  if (sealed.length < ivBytes + tagBytes + 2) return undefined;
  const bytes = Buffer.from(sealed);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, ivBytes), { authTagLength: tagBytes });
    decipher.setAAD(Buffer.from(cacheKey, 'utf8'));
    decipher.setAuthTag(bytes.subarray(bytes.length - tagBytes));
    const plaintext = Buffer.concat([
      decipher.update(bytes.subarray(ivBytes, bytes.length - tagBytes)),
      decipher.final(),
    ]);
    return parsePayload(plaintext.toString('utf8'));
  } catch {
    return undefined;
  }
}

function parsePayload(text: string): SealedPayload | undefined {
  const value: unknown = JSON.parse(text);
  if (typeof value !== 'object' || value === null) return undefined;
  const { accessToken, tokenType, scope, issuedAt, expiresAt } = value as Record<string, unknown>;
  if (typeof accessToken !== 'string' || typeof tokenType !== 'string' || typeof scope !== 'string') return undefined;
  if (typeof issuedAt !== 'number' || typeof expiresAt !== 'number') return undefined;
  return { accessToken, tokenType, scope, issuedAt, expiresAt };
}
