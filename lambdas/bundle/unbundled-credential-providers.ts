/**
 * Stands in, in the Lambda bundle only (lib/lambda-bundle.ts aliases them here), for the AWS SDK's profile,
 * SSO, credential-process and web-identity providers. Lambda gives the function its role's credentials in
 * environment variables, which the SDK's default chain reads first, so these providers never run there; bundled,
 * they and the STS, SSO and sign-in clients they load were ~115 KiB that every cold start compiled.
 * The container and instance-metadata providers stay. Local runs (`npm start`, tests) are not bundled and keep
 * the whole chain.
 */

/** What the SDK's chain expects of a provider that does not apply: `tryNextLink` moves it to the next one. */
class CredentialsProviderNotBundled extends Error {
  override name = 'CredentialsProviderError';
  readonly tryNextLink = true;
}

type ProviderFactory = (init?: unknown) => () => Promise<never>;

const notBundled =
  (provider: string): ProviderFactory =>
  () =>
  async () => {
    throw new CredentialsProviderNotBundled(
      `${provider} is not part of the Lambda bundle; the function takes its credentials from the environment`,
    );
  };

export const fromIni = notBundled('fromIni');
export const fromSSO = notBundled('fromSSO');
export const fromProcess = notBundled('fromProcess');
export const fromTokenFile = notBundled('fromTokenFile');
