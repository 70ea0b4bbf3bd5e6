/**
 * A wire-level stand-in for AWS Secrets Manager (no emulator is available from the registries we can reach).
 *
 * It speaks the service's real protocol — AWS JSON 1.1: `POST /`, `X-Amz-Target: secretsmanager.<Operation>`,
 * `Content-Type: application/x-amz-json-1.1`, errors as `x-amzn-ErrorType` + `{"__type", "message"}` — so that
 * the real `@aws-sdk/client-secrets-manager` client, its serializers, error parsing and retry logic are
 * exercised. Point the SDK at it with `AWS_ENDPOINT_URL_SECRETS_MANAGER=<endpoint>`.
 *
 * It insists on a SigV4 `Authorization` header (the signature itself is not verified) and implements
 * GetSecretValue, CreateSecret, PutSecretValue and UpdateSecretVersionStage, with staging labels as the service
 * keeps them: one version per label, and AWSPREVIOUS following AWSCURRENT when AWSCURRENT moves.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { listenOnLoopback } from '../../lambdas/local/listen.js';

export type SecretsManagerFault = 'InternalServiceError' | 'ThrottlingException';

export interface SecretsManagerStandIn {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** Creates the secret, or stores `value` as its new AWSCURRENT version; returns the secret's ARN. */
  putSecret(name: string, value: string): string;
  /**
   * Starts a rotation as a rotation function's createSecret step does: `value` becomes a new version labelled
   * AWSPENDING, AWSCURRENT stays where it is. Returns the new version's id.
   */
  putPendingSecret(name: string, value: string): string;
  /** Finishes it as finishSecret does: AWSCURRENT moves to the AWSPENDING version, AWSPREVIOUS to the old one. */
  finishRotation(name: string): void;
  /** GetSecretValue requests received (including failed ones and SDK retries). */
  getSecretValueCalls(): number;
  /**
   * The next `count` GetSecretValue requests fail with this error (InternalServiceError: HTTP 500,
   * ThrottlingException: HTTP 400; the SDK retries both). Replaces faults still pending from an earlier call,
   * so `failNext(0)` clears them — do so after a test that may not have used them all up.
   */
  failNext(count: number, kind?: SecretsManagerFault): void;
  close(): Promise<void>;
}

interface SecretVersion {
  versionId: string;
  value: string;
  createdDate: Date;
  stages: Set<string>;
}

interface StoredSecret {
  name: string;
  arn: string;
  createdDate: Date;
  versions: SecretVersion[];
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

const notFound = () =>
  new AwsError('ResourceNotFoundException', 400, "Secrets Manager can't find the specified secret.");
const faults: Record<SecretsManagerFault, () => AwsError> = {
  InternalServiceError: () => new AwsError('InternalServiceError', 500, 'An error occurred on the server side.'),
  ThrottlingException: () => new AwsError('ThrottlingException', 400, 'Rate exceeded'),
};

const jsonContentType = 'application/x-amz-json-1.1';
/** `AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, SignedHeaders=..., Signature=<hex>` */
const sigV4Authorization =
  /^AWS4-HMAC-SHA256 Credential=[^/\s,]+\/\d{8}\/[a-z0-9-]+\/secretsmanager\/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$/;
const maxBodyBytes = 1024 * 1024;

export async function startSecretsManagerStandIn(): Promise<SecretsManagerStandIn> {
  const secrets = new Map<string, StoredSecret>();
  let getSecretValueCalls = 0;
  const pendingFaults: SecretsManagerFault[] = [];
  const region = process.env.AWS_REGION ?? 'us-east-1';

  const create = (name: string, value: string): StoredSecret => {
    if (secrets.has(name)) {
      throw new AwsError(
        'ResourceExistsException',
        400,
        `The operation failed because the secret ${name} already exists.`,
      );
    }
    const suffix = randomBytes(6).toString('base64url').replace(/[-_]/g, 'x').slice(0, 6);
    const now = new Date();
    const secret: StoredSecret = {
      name,
      arn: `arn:aws:secretsmanager:${region}:123456789012:secret:${name}-${suffix}`,
      createdDate: now,
      versions: [{ versionId: randomUUID(), value, createdDate: now, stages: new Set(['AWSCURRENT']) }],
    };
    secrets.set(name, secret);
    return secret;
  };

  const find = (secretId: unknown): StoredSecret => {
    if (typeof secretId !== 'string' || secretId.length === 0) {
      throw new AwsError('InvalidParameterException', 400, 'You must provide a SecretId.');
    }
    const secret = secrets.get(secretId) ?? [...secrets.values()].find((s) => s.arn === secretId);
    if (!secret) throw notFound();
    return secret;
  };

  const labelled = (secret: StoredSecret, stage: string): SecretVersion | undefined =>
    secret.versions.find((version) => version.stages.has(stage));

  /** A label is on one version at most; moving AWSCURRENT leaves AWSPREVIOUS on the version it left. */
  const moveStage = (secret: StoredSecret, stage: string, to: SecretVersion): void => {
    const from = labelled(secret, stage);
    if (from === to) return;
    from?.stages.delete(stage);
    to.stages.add(stage);
    if (stage === 'AWSCURRENT' && from !== undefined) moveStage(secret, 'AWSPREVIOUS', from);
  };

  const addVersion = (secret: StoredSecret, value: string, stages: readonly string[] = ['AWSCURRENT']) => {
    const version: SecretVersion = { versionId: randomUUID(), value, createdDate: new Date(), stages: new Set() };
    secret.versions.push(version);
    for (const stage of stages) moveStage(secret, stage, version);
    return version;
  };

  const current = (secret: StoredSecret): SecretVersion => {
    const version = labelled(secret, 'AWSCURRENT');
    if (!version) throw notFound();
    return version;
  };

  const stagesOf = (input: Record<string, unknown>): string[] | undefined => {
    const stages = input.VersionStages;
    if (stages === undefined) return undefined;
    if (!Array.isArray(stages) || !stages.every((stage) => typeof stage === 'string')) {
      throw new AwsError('InvalidParameterException', 400, 'VersionStages must be a list of strings.');
    }
    return stages;
  };

  const secretString = (input: Record<string, unknown>): string => {
    if (typeof input.SecretString !== 'string') {
      throw new AwsError(
        'InvalidParameterException',
        400,
        'You must provide a SecretString (SecretBinary is not supported here).',
      );
    }
    return input.SecretString;
  };

  const operations: Record<string, (input: Record<string, unknown>) => Record<string, unknown>> = {
    GetSecretValue(input) {
      getSecretValueCalls += 1;
      const fault = pendingFaults.shift();
      if (fault) throw faults[fault]();
      const secret = find(input.SecretId);
      const stage = typeof input.VersionStage === 'string' ? input.VersionStage : undefined;
      const version =
        typeof input.VersionId === 'string'
          ? secret.versions.find((v) => v.versionId === input.VersionId && (stage === undefined || v.stages.has(stage)))
          : labelled(secret, stage ?? 'AWSCURRENT');
      if (!version) throw notFound();
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.versionId,
        SecretString: version.value,
        VersionStages: [...version.stages],
        CreatedDate: version.createdDate.getTime() / 1000,
      };
    },
    CreateSecret(input) {
      if (typeof input.Name !== 'string' || input.Name.length === 0) {
        throw new AwsError('InvalidParameterException', 400, 'You must provide a Name.');
      }
      const secret = create(input.Name, secretString(input));
      return { ARN: secret.arn, Name: secret.name, VersionId: current(secret).versionId };
    },
    PutSecretValue(input) {
      const secret = find(input.SecretId);
      const version = addVersion(secret, secretString(input), stagesOf(input));
      return { ARN: secret.arn, Name: secret.name, VersionId: version.versionId, VersionStages: [...version.stages] };
    },
    UpdateSecretVersionStage(input) {
      const secret = find(input.SecretId);
      if (typeof input.VersionStage !== 'string') {
        throw new AwsError('InvalidParameterException', 400, 'You must provide a VersionStage.');
      }
      const stage = input.VersionStage;
      const from = labelled(secret, stage);
      if (input.RemoveFromVersionId !== undefined && from?.versionId !== input.RemoveFromVersionId) {
        throw new AwsError('InvalidParameterException', 400, `The staging label ${stage} is not on that version.`);
      }
      const to = secret.versions.find((version) => version.versionId === input.MoveToVersionId);
      if (to !== undefined) moveStage(secret, stage, to);
      else if (from !== undefined) from.stages.delete(stage);
      return { ARN: secret.arn, Name: secret.name };
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
      const body = await readBody(req);
      if (req.method !== 'POST' || new URL(req.url ?? '/', 'http://placeholder').pathname !== '/') {
        return fail(new AwsError('UnknownOperationException', 404, 'Only POST / is served.'));
      }
      if (!sigV4Authorization.test(req.headers.authorization ?? '')) {
        return fail(
          req.headers.authorization === undefined
            ? new AwsError('MissingAuthenticationTokenException', 400, 'Missing Authentication Token')
            : new AwsError(
                'IncompleteSignatureException',
                400,
                'The request signature is not a SigV4 signature for secretsmanager.',
              ),
        );
      }
      if (req.headers['content-type']?.split(';')[0]?.trim() !== jsonContentType) {
        return fail(new AwsError('SerializationException', 400, `Content-Type must be ${jsonContentType}.`));
      }
      const target = req.headers['x-amz-target'];
      const operationName = typeof target === 'string' && target.startsWith('secretsmanager.') ? target.slice(15) : '';
      const operation = Object.hasOwn(operations, operationName) ? operations[operationName] : undefined;
      if (!operation) {
        return fail(new AwsError('UnknownOperationException', 400, 'The requested operation is not supported.'));
      }
      let input: unknown;
      try {
        input = body.length === 0 ? {} : JSON.parse(body);
      } catch {
        return fail(new AwsError('SerializationException', 400, 'The request body is not valid JSON.'));
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        return fail(new AwsError('SerializationException', 400, 'The request body must be a JSON object.'));
      }
      send(200, operation(input as Record<string, unknown>));
    } catch (error) {
      fail(error instanceof AwsError ? error : new AwsError('InternalServiceError', 500, 'Stand-in failure.'));
    }
  };

  const server = createServer((req, res) => {
    void handle(req, res);
  });
  const port = await listenOnLoopback(server);

  return {
    endpoint: `http://127.0.0.1:${port}`,
    putSecret(name, value) {
      const secret = secrets.get(name);
      if (secret) addVersion(secret, value);
      return (secret ?? create(name, value)).arn;
    },
    putPendingSecret(name, value) {
      const secret = secrets.get(name);
      if (!secret) throw new Error(`no secret ${name} to rotate`);
      return addVersion(secret, value, ['AWSPENDING']).versionId;
    },
    finishRotation(name) {
      const secret = secrets.get(name);
      const pending = secret === undefined ? undefined : labelled(secret, 'AWSPENDING');
      if (secret === undefined || pending === undefined) throw new Error(`no rotation of ${name} in progress`);
      moveStage(secret, 'AWSCURRENT', pending);
      pending.stages.delete('AWSPENDING');
    },
    getSecretValueCalls: () => getSecretValueCalls,
    failNext(count, kind = 'InternalServiceError') {
      pendingFaults.length = 0;
      for (let i = 0; i < count; i += 1) pendingFaults.push(kind);
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/**
 * Stores a random sealing key in the stand-in, shaped like the stack's generated secret (64 letters and digits), and
 * returns it (for leak checks) with the environment that points the broker at it by ARN, as the stack's does.
 */
export function storeSealingKey(standIn: SecretsManagerStandIn, name = 'token-broker/sealing-key') {
  const key = randomBytes(48).toString('base64url').replace(/[-_]/g, 'x');
  return { key, env: { [environmentVariables.sealingSecretArn]: standIn.putSecret(name, key) } };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > maxBodyBytes) throw new AwsError('ValidationException', 400, 'Request body too large.');
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
