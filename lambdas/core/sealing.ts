import { createCipheriv, createDecipheriv, createHash, hkdfSync, type JsonWebKey, randomBytes } from 'node:crypto';

/**
 * Tokens at rest are sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the deployment's sealing
 * key, a random secret held in Secrets Manager that the table never sees, for one cache key and one client
 * secret. So a copy of the table tests nothing offline: without the sealing key no guess of the client's secret
 * can be checked against it. The cache key is in the derivation and the associated data, so a sealed token cannot
 * be moved to another key; the client's secret material is in the derivation, so a token sealed under a
 * rotated-away secret reads as a miss.
 *
 * Format 2: iv (12 bytes) | ciphertext | tag (16 bytes); the plaintext is JSON of SealedPayload. Format 1 (a key
 * derived from the client's secret alone) is never opened: its items read as misses.
 */
export const sealFormat = 2;
const ivBytes = 12;
const tagBytes = 16;
const info = Buffer.from('token-broker/token-seal/v2');
/** A sealing key shorter than this is refused: 32 characters of the stack's generated alphabet hold about 190 bits. */
export const minSealingKeyBytes = 32;

export interface SealedPayload {
  accessToken: string;
  tokenType: string;
  scope: string;
  issuedAt: number;
  expiresAt: number;
}

export type SealingKey = Buffer & { readonly brand?: 'SealingKey' };

/** The secret part of a client's credentials: the shared secret, or the private key's private parameters. */
export function secretMaterialOf(credentials: {
  clientSecret?: string | undefined;
  privateKeyJwk?: JsonWebKey | undefined;
  kmsKeyArn?: string | undefined;
}): string {
  if (credentials.clientSecret !== undefined) return credentials.clientSecret;
  // No secret to bind to: a token stays bound to the key, so moving the client to a new key drops its tokens.
  if (credentials.kmsKeyArn !== undefined) return `kms:${credentials.kmsKeyArn}`;
  const jwk = credentials.privateKeyJwk ?? {};
  return JSON.stringify([jwk.d, jwk.p, jwk.q]);
}

/**
 * The key one cache key's token is sealed under. Cache key and secret material enter as SHA-256 digests: HKDF's
 * info is bounded (1024 bytes in Node) and a registry's scopes are not.
 */
export function deriveSealingKey(deploymentKey: Uint8Array, cacheKey: string, secretMaterial: string): SealingKey {
  if (deploymentKey.length < minSealingKeyBytes) throw new RangeError('the sealing key is too short');
  const context = Buffer.concat([info, sha256(cacheKey), sha256(secretMaterial)]);
  return Buffer.from(hkdfSync('sha256', deploymentKey, Buffer.alloc(0), context, 32));
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
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
