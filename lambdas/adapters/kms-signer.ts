import { createHash, createPublicKey } from 'node:crypto';
import {
  GetPublicKeyCommand,
  type GetPublicKeyCommandOutput,
  type KMSClient,
  SignCommand,
  type SigningAlgorithmSpec,
} from '@aws-sdk/client-kms';
import { BrokerError } from '../core/errors.js';
import type { AssertionAlgorithm } from '../core/ports.js';

/** A KMS asymmetric key as a client assertion is signed with it: its public half, kid and algorithm. */
export interface KmsSigningKey {
  keyArn: string;
  /** RFC 7638 thumbprint of the public key, unless the registry names the kid. */
  kid: string;
  alg: AssertionAlgorithm;
  /** The public key as a JWK (with kid, alg, use), for a JWKS. */
  publicJwk: Record<string, unknown>;
}

const kmsAlgorithms: Record<AssertionAlgorithm, SigningAlgorithmSpec> = {
  RS256: 'RSASSA_PKCS1_V1_5_SHA_256',
  RS384: 'RSASSA_PKCS1_V1_5_SHA_384',
  PS256: 'RSASSA_PSS_SHA_256',
  PS384: 'RSASSA_PSS_SHA_384',
  ES256: 'ECDSA_SHA_256',
  ES384: 'ECDSA_SHA_384',
};

/**
 * Signs client assertions with a KMS asymmetric key (`kms:Sign`), so the private key never leaves KMS: the
 * broker holds only the public half, read once per container with `kms:GetPublicKey`. The key's spec decides
 * the default algorithm: RS384 for RSA, ES256 or ES384 by curve.
 */
export class KmsAssertionSigner {
  private readonly keys = new Map<string, Promise<KmsSigningKey>>();

  constructor(private readonly kms: () => KMSClient) {}

  /** The key's public half; a failure is not remembered, so the next request asks again. */
  signingKey(keyArn: string, options: { kid?: string; alg?: AssertionAlgorithm } = {}): Promise<KmsSigningKey> {
    const cacheKey = `${keyArn}\u0000${options.kid ?? ''}\u0000${options.alg ?? ''}`;
    let key = this.keys.get(cacheKey);
    if (key === undefined) {
      key = this.readPublicKey(keyArn, options);
      this.keys.set(cacheKey, key);
      key.catch(() => this.keys.delete(cacheKey));
    }
    return key;
  }

  /** A JWS signature over `signingInput` (the header and claims, base64url, joined by a dot). */
  async sign(key: KmsSigningKey, signingInput: string): Promise<string> {
    let signature: Uint8Array | undefined;
    try {
      ({ Signature: signature } = await this.kms().send(
        new SignCommand({
          KeyId: key.keyArn,
          Message: Buffer.from(signingInput, 'ascii'),
          MessageType: 'RAW',
          SigningAlgorithm: kmsAlgorithms[key.alg],
        }),
      ));
    } catch (error) {
      throw kmsFailure('sign with', error);
    }
    if (signature === undefined) throw kmsFailure('sign with', undefined);
    const bytes = Buffer.from(signature);
    return (key.alg.startsWith('ES') ? joseSignatureOf(bytes, key.alg === 'ES256' ? 32 : 48) : bytes).toString(
      'base64url',
    );
  }

  private async readPublicKey(keyArn: string, options: { kid?: string; alg?: AssertionAlgorithm }) {
    let output: GetPublicKeyCommandOutput;
    try {
      output = await this.kms().send(new GetPublicKeyCommand({ KeyId: keyArn }));
    } catch (error) {
      throw kmsFailure('read the public key of', error);
    }
    if (output.PublicKey === undefined) throw kmsFailure('read the public key of', undefined);
    const spec = output.KeySpec ?? '';
    const curve = spec === 'ECC_NIST_P256' ? 'P-256' : spec === 'ECC_NIST_P384' ? 'P-384' : undefined;
    if (!spec.startsWith('RSA_') && curve === undefined) {
      throw new BrokerError(
        'unavailable',
        `the KMS signing key of a client is ${spec || 'of no known spec'}, not RSA, P-256 or P-384`,
      );
    }
    const alg: AssertionAlgorithm =
      options.alg ?? (curve === undefined ? 'RS384' : curve === 'P-256' ? 'ES256' : 'ES384');
    const fits = curve === undefined ? /^[RP]S/.test(alg) : alg === (curve === 'P-256' ? 'ES256' : 'ES384');
    if (!fits) throw new BrokerError('unavailable', `signingAlgorithm ${alg} does not fit the KMS key's ${spec}`);
    const jwk = createPublicKey({ key: Buffer.from(output.PublicKey), format: 'der', type: 'spki' }).export({
      format: 'jwk',
    }) as Record<string, string>;
    const kid = options.kid ?? thumbprintOf(jwk);
    return { keyArn, kid, alg, publicJwk: { ...jwk, kid, alg, use: 'sig' } };
  }
}

/** RFC 7638: the SHA-256 of the required members, in lexical order, base64url. */
export function thumbprintOf(jwk: Record<string, string>): string {
  const members =
    jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

/** KMS answers ECDSA signatures in DER (a SEQUENCE of two INTEGERs); JWS wants r and s, each `size` bytes. */
export function joseSignatureOf(der: Buffer, size: number): Buffer {
  const invalid = () => new BrokerError('upstream_error', 'KMS answered an ECDSA signature that is not DER');
  let offset = 0;
  const byte = () => {
    const value = der[offset++];
    if (value === undefined) throw invalid();
    return value;
  };
  const length = () => {
    const first = byte();
    if (first < 0x80) return first;
    let value = 0;
    for (let i = 0; i < (first & 0x7f); i++) value = (value << 8) | byte();
    return value;
  };
  if (byte() !== 0x30) throw invalid();
  length();
  const integer = () => {
    if (byte() !== 0x02) throw invalid();
    const size_ = length();
    const bytes = der.subarray(offset, offset + size_);
    offset += size_;
    const trimmed = bytes.subarray(Math.max(0, bytes.length - size));
    if (bytes.length > size && bytes.subarray(0, bytes.length - size).some((b) => b !== 0)) throw invalid();
    return Buffer.concat([Buffer.alloc(size - trimmed.length), trimmed]);
  };
  return Buffer.concat([integer(), integer()]);
}

/** Names the SDK's error type, never the key: callers see this description. */
function kmsFailure(what: string, error: unknown): BrokerError {
  const name = error instanceof Error && /^[A-Za-z]{1,64}$/.test(error.name) ? error.name : 'no answer';
  return new BrokerError('unavailable', `the broker could not ${what} the client's KMS signing key (${name})`, {
    cause: error,
  });
}
