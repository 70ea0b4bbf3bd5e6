/**
 * Verifies AWS Signature Version 4 on a request the way API Gateway's AWS_IAM authorization and the Lambda API
 * do: the credential scope, the date, and the signature recomputed with @smithy/signature-v4 over exactly the
 * headers the caller signed. The local dev server checks its callers with it; a test stands in for API Gateway
 * with it. Any SigV4 client works unchanged: the AWS SDKs, botocore, curl --aws-sigv4.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';

export interface SigningCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** When set, the request must carry it, signed, as X-Amz-Security-Token. */
  sessionToken?: string;
}

export interface RequestToVerify {
  method: string;
  /** The request target as sent: the path, percent-encoding untouched, and the query if any. */
  target: string;
  headers: IncomingHttpHeaders;
  body: Uint8Array;
}

export interface SignatureExpectation {
  region: string;
  service: string;
  credentials: ReadonlyMap<string, SigningCredentials>;
}

export type Verification =
  | { verified: true; accessKeyId: string; signedHeaders: string[] }
  /** `unsigned`: no Authorization header at all. The reason never quotes the expected signature. */
  | { verified: false; unsigned: boolean; reason: string };

/** AWS allows a request's date this far from its own clock. */
const maxSkewMs = 5 * 60_000;
const authorizationPattern =
  /^AWS4-HMAC-SHA256 Credential=([^/\s]+)\/(\d{8})\/([^/\s]+)\/([^/\s]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;
const amzDatePattern = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

export const signatureMismatch = 'The request signature we calculated does not match the signature you provided';

function headerText(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function refused(reason: string): Verification {
  return { verified: false, unsigned: false, reason };
}

export async function verifySignature(request: RequestToVerify, expected: SignatureExpectation): Promise<Verification> {
  const authorization = headerText(request.headers, 'authorization');
  if (authorization === undefined) return { verified: false, unsigned: true, reason: 'Missing Authentication Token' };
  const match = authorizationPattern.exec(authorization);
  if (!match) return refused('Authorization is not AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...');
  const [, accessKeyId = '', shortDate, region, service, signedHeaderList = '', signature = ''] = match;
  if (region !== expected.region) return refused(`signed for region ${region}, expected ${expected.region}`);
  if (service !== expected.service) return refused(`signed for service ${service}, expected ${expected.service}`);
  const credentials = expected.credentials.get(accessKeyId);
  if (credentials === undefined) return refused('The security token included in the request is invalid');

  const amzDate = headerText(request.headers, 'x-amz-date');
  const dateParts = amzDate === undefined ? null : amzDatePattern.exec(amzDate);
  if (amzDate === undefined || dateParts === null) return refused('X-Amz-Date is missing or not YYYYMMDDTHHMMSSZ');
  const [, year, month, day, hours, minutes, seconds] = dateParts;
  const signingDate = new Date(`${year}-${month}-${day}T${hours}:${minutes}:${seconds}Z`);
  if (amzDate.slice(0, 8) !== shortDate) return refused('X-Amz-Date and the credential scope date differ');
  if (!(Math.abs(Date.now() - signingDate.getTime()) < maxSkewMs)) {
    return refused('X-Amz-Date is more than 5 minutes from the server clock');
  }

  const signedHeaders = signedHeaderList.split(';');
  if (signedHeaders.join(';') !== [...signedHeaders].sort().join(';')) return refused('SignedHeaders is not sorted');
  for (const required of ['host', 'x-amz-date']) {
    if (!signedHeaders.includes(required)) return refused(`${required} is not signed`);
  }
  const contentSha256 = headerText(request.headers, 'x-amz-content-sha256');
  if (contentSha256 !== undefined && contentSha256 !== createHash('sha256').update(request.body).digest('hex')) {
    return refused('x-amz-content-sha256 is not the body');
  }
  if (credentials.sessionToken !== undefined) {
    const token = headerText(request.headers, 'x-amz-security-token');
    if (token !== credentials.sessionToken || !signedHeaders.includes('x-amz-security-token')) {
      return refused('The security token included in the request is invalid');
    }
  }

  // Exactly what was signed, so that the signer neither adds nor leaves out a header.
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) {
    const value = headerText(request.headers, name);
    if (value === undefined) return refused(`signed header ${name} is missing`);
    headers[name] = value;
  }
  const queryAt = request.target.indexOf('?');
  const path = queryAt === -1 ? request.target : request.target.slice(0, queryAt);
  const query: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(queryAt === -1 ? '' : request.target.slice(queryAt + 1))) {
    const previous = query[name];
    query[name] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value];
  }
  const signer = new SignatureV4({
    service: expected.service,
    region: expected.region,
    credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey },
    sha256: Sha256,
    applyChecksum: false,
  });
  const resigned = await signer.sign(
    new HttpRequest({
      method: request.method,
      protocol: 'http:',
      hostname: '',
      path,
      query,
      headers,
      body: request.body,
    }),
    { signingDate, signableHeaders: new Set(signedHeaders) },
  );
  const expectedSignature = Buffer.from(
    /Signature=([0-9a-f]{64})$/.exec(String(resigned.headers.authorization))?.[1] ?? '',
  );
  const actualSignature = Buffer.from(signature);
  if (expectedSignature.length !== actualSignature.length || !timingSafeEqual(expectedSignature, actualSignature)) {
    return refused(signatureMismatch);
  }
  return { verified: true, accessKeyId, signedHeaders };
}
