import type { STSClient } from '@aws-sdk/client-sts';
import type { WebIdentitySigningAlgorithm } from '../core/config.js';
import { BrokerError } from '../core/errors.js';

/**
 * How long an assertion STS mints for the broker lives: the five minutes SMART and most providers allow a client
 * assertion, and STS's default. The stack's policy allows no longer (`sts:DurationSeconds`).
 */
export const webIdentityTokenSeconds = 300;

/**
 * Client assertions that AWS STS signs for the function's own role (`GetWebIdentityToken`, IAM outbound identity
 * federation): a JWT with `iss` the account's STS issuer URL, `sub` the role's ARN and `aud` the given audience,
 * which a provider verifies against the keys at that issuer's JWKS. One fresh token per token request, as with a
 * signed assertion: none is kept, so none can be replayed from memory.
 */
export class StsWebIdentityAssertions {
  /** `sts` makes the client on first use (compose.ts imports the STS SDK only then). */
  constructor(private readonly sts: () => Promise<STSClient>) {}

  async assertionFor(audience: string, algorithm: WebIdentitySigningAlgorithm): Promise<string> {
    let token: string | undefined;
    try {
      const [client, { GetWebIdentityTokenCommand }] = await Promise.all([this.sts(), import('@aws-sdk/client-sts')]);
      ({ WebIdentityToken: token } = await client.send(
        new GetWebIdentityTokenCommand({
          Audience: [audience],
          SigningAlgorithm: algorithm,
          DurationSeconds: webIdentityTokenSeconds,
        }),
      ));
    } catch (error) {
      throw stsFailure(error);
    }
    if (token === undefined || token === '') throw stsFailure(undefined);
    return token;
  }
}

/** Names the SDK's error type (OutboundWebIdentityFederationDisabledException, AccessDenied), never the token. */
function stsFailure(error: unknown): BrokerError {
  const name = error instanceof Error && /^[A-Za-z]{1,64}$/.test(error.name) ? error.name : 'no answer';
  const hint =
    name === 'OutboundWebIdentityFederationDisabledException'
      ? ': enable it with `aws iam enable-outbound-web-identity-federation`'
      : '';
  return new BrokerError(
    'unavailable',
    `the broker could not get a web identity token from AWS STS for the client's assertion (${name})${hint}`,
    { cause: error },
  );
}
