/**
 * A wire-level stand-in for AWS KMS's asymmetric signing (no emulator is available from the registries we can
 * reach), as test/support/secrets-manager.ts is for Secrets Manager.
 *
 * It speaks the service's protocol, AWS JSON 1.1 (`POST /`, `X-Amz-Target: TrentService.<Operation>`, errors as
 * `x-amzn-ErrorType` + `{"__type", "message"}`), so the real `@aws-sdk/client-kms` client is exercised. Point the
 * SDK at it with `AWS_ENDPOINT_URL_KMS=<endpoint>`. It implements Sign (RAW messages) and GetPublicKey for
 * SIGN_VERIFY keys it makes with `createKey`; the private halves never leave it, as with KMS.
 */
import { constants, createPublicKey, generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenOnLoopback } from '../../lambdas/local/listen.js';

export type KmsKeySpec = 'RSA_2048' | 'ECC_NIST_P256' | 'ECC_NIST_P384';

export interface KmsStandIn {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** A new asymmetric SIGN_VERIFY key: its ARN, and its public half as a JWK. */
  createKey(spec: KmsKeySpec): { arn: string; publicJwk: Record<string, string> };
  /** Sign requests received, by key ARN. */
  signCalls(arn?: string): number;
  /** The public half of a key `createKey` made, as a JWK. */
  publicJwkOf(arn: string): Record<string, string>;
  /** GetPublicKey requests received, by key ARN. */
  publicKeyCalls(arn?: string): number;
  /** Refuses every request for the key with AccessDeniedException, as a missing grant does; `false` lifts it. */
  deny(arn: string, denied?: boolean): void;
  close(): Promise<void>;
}

interface StoredKey {
  spec: KmsKeySpec;
  privateKey: KeyObject;
  publicDer: Buffer;
  algorithms: string[];
  denied: boolean;
}

class AwsError extends Error {
  constructor(
    readonly type: string,
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const jsonContentType = 'application/x-amz-json-1.1';
const sigV4Authorization =
  /^AWS4-HMAC-SHA256 Credential=[^/\s,]+\/\d{8}\/[a-z0-9-]+\/kms\/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$/;

const algorithmsOf: Record<KmsKeySpec, string[]> = {
  RSA_2048: [
    'RSASSA_PSS_SHA_256',
    'RSASSA_PSS_SHA_384',
    'RSASSA_PSS_SHA_512',
    'RSASSA_PKCS1_V1_5_SHA_256',
    'RSASSA_PKCS1_V1_5_SHA_384',
    'RSASSA_PKCS1_V1_5_SHA_512',
  ],
  ECC_NIST_P256: ['ECDSA_SHA_256'],
  ECC_NIST_P384: ['ECDSA_SHA_384'],
};

export async function startKmsStandIn(): Promise<KmsStandIn> {
  const keys = new Map<string, StoredKey>();
  const signs = new Map<string, number>();
  const publicKeyReads = new Map<string, number>();
  const total = (counts: Map<string, number>, arn?: string) =>
    arn === undefined ? [...counts.values()].reduce((sum, n) => sum + n, 0) : (counts.get(arn) ?? 0);
  const region = process.env.AWS_REGION ?? 'us-east-1';

  const find = (keyId: unknown): [string, StoredKey] => {
    const key = typeof keyId === 'string' ? keys.get(keyId) : undefined;
    if (key === undefined || typeof keyId !== 'string') throw new AwsError('NotFoundException', 400, 'Key not found.');
    if (key.denied) {
      throw new AwsError('AccessDeniedException', 400, 'User is not authorized to perform: kms:Sign on this key.');
    }
    return [keyId, key];
  };

  const operations: Record<string, (input: Record<string, unknown>) => Record<string, unknown>> = {
    GetPublicKey(input) {
      const [arn, key] = find(input.KeyId);
      publicKeyReads.set(arn, (publicKeyReads.get(arn) ?? 0) + 1);
      return {
        KeyId: arn,
        PublicKey: key.publicDer.toString('base64'),
        KeySpec: key.spec,
        KeyUsage: 'SIGN_VERIFY',
        SigningAlgorithms: key.algorithms,
      };
    },
    Sign(input) {
      const [arn, key] = find(input.KeyId);
      signs.set(arn, (signs.get(arn) ?? 0) + 1);
      const algorithm = input.SigningAlgorithm;
      if (typeof algorithm !== 'string' || !key.algorithms.includes(algorithm)) {
        throw new AwsError('InvalidKeyUsageException', 400, `${String(algorithm)} is not valid for this key.`);
      }
      if (input.MessageType !== undefined && input.MessageType !== 'RAW') {
        throw new AwsError('ValidationException', 400, 'Only RAW messages are supported here.');
      }
      if (typeof input.Message !== 'string') throw new AwsError('ValidationException', 400, 'Message is required.');
      const message = Buffer.from(input.Message, 'base64');
      if (message.length > 4096) throw new AwsError('ValidationException', 400, 'A RAW message is at most 4096 bytes.');
      const hash = `sha${algorithm.slice(-3)}`;
      const signature = algorithm.startsWith('RSASSA_PSS')
        ? sign(hash, message, {
            key: key.privateKey,
            padding: constants.RSA_PKCS1_PSS_PADDING,
            saltLength: Number(algorithm.slice(-3)) / 8,
          })
        : sign(hash, message, key.privateKey);
      return { KeyId: arn, Signature: signature.toString('base64'), SigningAlgorithm: algorithm };
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const send = (status: number, body: Record<string, unknown>, errorType?: string) => {
      const payload = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': jsonContentType,
        'content-length': Buffer.byteLength(payload),
        'x-amzn-requestid': randomUUID(),
        ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
      });
      res.end(payload);
    };
    const fail = (error: AwsError) => send(error.status, { __type: error.type, message: error.message }, error.type);
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      if (!sigV4Authorization.test(req.headers.authorization ?? '')) {
        return fail(new AwsError('IncompleteSignatureException', 400, 'The request is not SigV4-signed for kms.'));
      }
      const target = req.headers['x-amz-target'];
      const name = typeof target === 'string' && target.startsWith('TrentService.') ? target.slice(13) : '';
      const operation = Object.hasOwn(operations, name) ? operations[name] : undefined;
      if (operation === undefined) {
        return fail(new AwsError('UnknownOperationException', 400, 'The requested operation is not supported.'));
      }
      const input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
      send(200, operation(input));
    } catch (error) {
      fail(error instanceof AwsError ? error : new AwsError('KMSInternalException', 500, 'Stand-in failure.'));
    }
  };

  const server = createServer((req, res) => {
    void handle(req, res);
  });
  const port = await listenOnLoopback(server);

  return {
    endpoint: `http://127.0.0.1:${port}`,
    createKey(spec) {
      const { privateKey, publicKey } =
        spec === 'RSA_2048'
          ? generateKeyPairSync('rsa', { modulusLength: 2048 })
          : generateKeyPairSync('ec', { namedCurve: spec === 'ECC_NIST_P256' ? 'P-256' : 'P-384' });
      const arn = `arn:aws:kms:${region}:123456789012:key/${randomUUID()}`;
      const publicDer = publicKey.export({ format: 'der', type: 'spki' });
      keys.set(arn, { spec, privateKey, publicDer, algorithms: algorithmsOf[spec], denied: false });
      const publicJwk = createPublicKey({ key: publicDer, format: 'der', type: 'spki' }).export({ format: 'jwk' });
      return { arn, publicJwk: publicJwk as Record<string, string> };
    },
    signCalls: (arn) => total(signs, arn),
    publicKeyCalls: (arn) => total(publicKeyReads, arn),
    publicJwkOf(arn) {
      const key = keys.get(arn);
      if (key === undefined) throw new Error(`no key ${arn}`);
      return createPublicKey({ key: key.publicDer, format: 'der', type: 'spki' }).export({ format: 'jwk' }) as Record<
        string,
        string
      >;
    },
    deny(arn, denied = true) {
      const key = keys.get(arn);
      if (key !== undefined) key.denied = denied;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
