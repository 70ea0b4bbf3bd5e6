/**
 * A wire-level stand-in for AWS STS's GetWebIdentityToken (IAM outbound identity federation), as test/support/kms.ts
 * is for KMS: no emulator on the registries we reach implements it.
 *
 * Two servers. The API speaks STS's protocol, AWS Query (`POST /` with a form body `Action=GetWebIdentityToken&
 * Version=2011-06-15&Audience.member.1=...`, XML answers, errors as `<ErrorResponse>`), so the real
 * `@aws-sdk/client-sts` client is exercised; point it here with `AWS_ENDPOINT_URL_STS`. The issuer serves what the
 * account's issuer URL serves, over TLS with the test CA: `/.well-known/openid-configuration` and
 * `/.well-known/jwks.json`, which a provider verifies the tokens with. The tokens carry the claims STS documents:
 * `iss` the issuer URL, `sub` the caller's role ARN, `aud`, `iat`, `exp`, `jti`, and the `https://sts.amazonaws.com/`
 * namespace with the account and region.
 */
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { listenOnLoopback } from '../../lambdas/local/listen.js';

export interface StsStandIn {
  /** `http://127.0.0.1:<port>`, for AWS_ENDPOINT_URL_STS. */
  endpoint: string;
  /** The account's issuer URL (`https://localhost:<port>`), as `aws iam enable-outbound-web-identity-federation` prints it. */
  issuer: string;
  /** The `sub` of every token: the role the caller runs as. */
  principalArn: string;
  /** GetWebIdentityToken requests answered with a token. */
  tokenCalls(): number;
  /** Every token minted, to check that none reaches a log. */
  tokens(): string[];
  /** The request of the last call: audiences, algorithm and duration as received. */
  lastRequest(): { audiences: string[]; algorithm?: string; durationSeconds?: number } | undefined;
  /** Off: every call fails with OutboundWebIdentityFederationDisabledException, as in an account that never enabled it. */
  setEnabled(enabled: boolean): void;
  close(): Promise<void>;
}

const sigV4Authorization =
  /^AWS4-HMAC-SHA256 Credential=[^/\s,]+\/\d{8}\/[a-z0-9-]+\/sts\/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$/;
const xmlns = 'https://sts.amazonaws.com/doc/2011-06-15/';

const escapeXml = (value: string) =>
  value.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c);

export async function startStsStandIn(options: {
  tls: { key: string; cert: string };
  principalArn?: string;
}): Promise<StsStandIn> {
  const principalArn = options.principalArn ?? 'arn:aws:iam::123456789012:role/token-broker-function';
  const account = principalArn.split(':')[4] ?? '123456789012';
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const signingKeys = {
    RS256: { kid: `rsa-${randomUUID()}`, pair: await generateKeyPair('RS256', { modulusLength: 2048 }) },
    ES384: { kid: `ec-${randomUUID()}`, pair: await generateKeyPair('ES384') },
  } as const;
  const jwks: JWK[] = await Promise.all(
    Object.entries(signingKeys).map(async ([alg, key]) => ({
      ...(await exportJWK(key.pair.publicKey)),
      kid: key.kid,
      alg,
      use: 'sig',
    })),
  );
  let enabled = true;
  let calls = 0;
  const minted: string[] = [];
  let last: ReturnType<StsStandIn['lastRequest']>;

  const issuerServer = createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://localhost').pathname;
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
      return send(200, {
        issuer,
        jwks_uri: `${issuer}/.well-known/jwks.json`,
        id_token_signing_alg_values_supported: Object.keys(signingKeys),
        subject_types_supported: ['public'],
        response_types_supported: ['id_token'],
      });
    }
    if (req.method === 'GET' && path === '/.well-known/jwks.json') return send(200, { keys: jwks });
    send(404, { message: 'not found' });
  });
  const issuerPort = await listenOnLoopback(issuerServer);
  const issuer = `https://localhost:${issuerPort}`;

  const fail = (res: ServerResponse, status: number, code: string, message: string) => {
    const body =
      `<ErrorResponse xmlns="${xmlns}"><Error><Type>Sender</Type><Code>${code}</Code>` +
      `<Message>${escapeXml(message)}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`;
    res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': randomUUID() });
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (!sigV4Authorization.test(req.headers.authorization ?? '')) {
      return fail(res, 403, 'IncompleteSignature', 'The request is not SigV4-signed for sts.');
    }
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    if (form.get('Action') !== 'GetWebIdentityToken' || form.get('Version') !== '2011-06-15') {
      return fail(res, 400, 'InvalidAction', `Could not find operation ${form.get('Action')}.`);
    }
    const audiences = [...form.entries()].filter(([name]) => /^Audience\.member\.\d+$/.test(name)).map(([, v]) => v);
    const algorithm = form.get('SigningAlgorithm') ?? undefined;
    const duration = form.get('DurationSeconds');
    const durationSeconds = duration === null ? undefined : Number(duration);
    last = {
      audiences,
      ...(algorithm === undefined ? {} : { algorithm }),
      ...(durationSeconds === undefined ? {} : { durationSeconds }),
    };
    if (!enabled) {
      return fail(
        res,
        400,
        'OutboundWebIdentityFederationDisabledException',
        'Outbound identity federation is disabled.',
      );
    }
    if (audiences.length < 1 || audiences.length > 10 || audiences.some((a) => a.length < 1 || a.length > 1000)) {
      return fail(res, 400, 'ValidationError', 'Audience must name 1 to 10 audiences of 1 to 1000 characters.');
    }
    if (algorithm !== 'RS256' && algorithm !== 'ES384') {
      return fail(res, 400, 'ValidationError', 'SigningAlgorithm must be RS256 or ES384.');
    }
    const seconds = durationSeconds ?? 300;
    if (!Number.isInteger(seconds) || seconds < 60 || seconds > 3600) {
      return fail(res, 400, 'ValidationError', 'DurationSeconds must be from 60 to 3600.');
    }
    const key = signingKeys[algorithm];
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({
      'https://sts.amazonaws.com/': { aws_account: account, source_region: region },
    })
      .setProtectedHeader({ alg: algorithm, kid: key.kid, typ: 'JWT' })
      .setIssuer(issuer)
      .setSubject(principalArn)
      .setAudience(audiences.length === 1 ? (audiences[0] as string) : audiences)
      .setIssuedAt(now)
      .setExpirationTime(now + seconds)
      .setJti(randomUUID())
      .sign(key.pair.privateKey);
    calls += 1;
    minted.push(token);
    const expiration = new Date((now + seconds) * 1000).toISOString();
    res.writeHead(200, { 'content-type': 'text/xml', 'x-amzn-requestid': randomUUID() });
    res.end(
      `<GetWebIdentityTokenResponse xmlns="${xmlns}"><GetWebIdentityTokenResult>` +
        `<WebIdentityToken>${token}</WebIdentityToken><Expiration>${expiration}</Expiration>` +
        `</GetWebIdentityTokenResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata>` +
        '</GetWebIdentityTokenResponse>',
    );
  };
  const apiServer = createHttpServer((req, res) => {
    handle(req, res).catch(() => fail(res, 500, 'InternalFailure', 'Stand-in failure.'));
  });
  const apiPort = await listenOnLoopback(apiServer);

  return {
    endpoint: `http://127.0.0.1:${apiPort}`,
    issuer,
    principalArn,
    tokenCalls: () => calls,
    tokens: () => [...minted],
    lastRequest: () => last,
    setEnabled(value) {
      enabled = value;
    },
    async close() {
      for (const server of [apiServer, issuerServer]) server.closeAllConnections();
      await Promise.all(
        [apiServer, issuerServer].map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
      );
    },
  };
}
