/**
 * Who may call the local dev server. It listens on loopback, which every local user and process reaches, and
 * it hands out tokens; so, like Jupyter, it makes a secret at each start and shows it only to whoever started
 * it. The secret is an AWS-style access key pair and requests are SigV4-signed with it, as in the deployment
 * (service execute-api for the HTTP routes, lambda for the Invoke API), so every SigV4 client works unchanged
 * once the printed variables are exported.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { localRegion } from './lambda-invoke-api.js';
import { type RequestToVerify, type SigningCredentials, type Verification, verifySignature } from './sigv4.js';

export interface LocalCallerCredentials extends SigningCredentials {
  region: string;
}

const base32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** An access key id shaped like AWS's (AKIA + 16 base32 characters) and a 240-bit secret, new at every start. */
export function generateCallerCredentials(): LocalCallerCredentials {
  const keySuffix = Array.from({ length: 16 }, () => base32[randomInt(base32.length)]).join('');
  return {
    accessKeyId: `AKIA${keySuffix}`,
    secretAccessKey: randomBytes(30).toString('base64url'),
    region: localRegion,
  };
}

/**
 * What a caller's shell needs to reach the server with any AWS SDK, botocore or the AWS CLI. botocore reads
 * AWS_DEFAULT_REGION, the others AWS_REGION; AWS_ENDPOINT_URL_LAMBDA sends the SDKs' Lambda calls here.
 * TOKEN_BROKER_URL and TOKEN_BROKER_FUNCTION are what the README's and docs/client.md's examples read.
 */
export function callerEnvironment(
  credentials: LocalCallerCredentials,
  baseUrl: string,
  functionName: string,
): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    AWS_REGION: credentials.region,
    AWS_DEFAULT_REGION: credentials.region,
    AWS_ENDPOINT_URL_LAMBDA: baseUrl,
    TOKEN_BROKER_URL: `${baseUrl}/`,
    TOKEN_BROKER_FUNCTION: functionName,
  };
}

/**
 * The lines to paste. A profile would win over the exported keys in the JavaScript SDK, and a leftover session
 * token would be signed along, so both are unset first.
 */
export function exportLines(environment: Record<string, string>): string[] {
  const assignments = Object.entries(environment).map(([name, value]) => `${name}=${value}`);
  return ['unset AWS_PROFILE AWS_SESSION_TOKEN', `export ${assignments.join(' ')}`];
}

export type CallerRefusal = { unsigned: boolean; description: string };

/** Undefined when the request is signed with the start's credentials for the entry point it calls. */
export async function callerRefusal(
  request: RequestToVerify,
  entryPoint: 'http' | 'invoke',
  credentials: LocalCallerCredentials,
): Promise<CallerRefusal | undefined> {
  const service = entryPoint === 'http' ? 'execute-api' : 'lambda';
  const verification: Verification = await verifySignature(request, {
    region: credentials.region,
    service,
    credentials: new Map([[credentials.accessKeyId, credentials]]),
  });
  if (verification.verified) return undefined;
  return {
    unsigned: verification.unsigned,
    description:
      `${verification.reason}: the local server takes requests SigV4-signed (service ${service}, region ` +
      `${credentials.region}) with the credentials it printed at start`,
  };
}
