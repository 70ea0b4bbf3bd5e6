/**
 * Bundled by test/stack/bundle-credentials.test.ts with the Lambda bundle's options, then run in a fresh process:
 * resolves credentials through the SDK's default chain, as the function's clients do, and prints the outcome.
 */
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

const client = new SecretsManagerClient({});
try {
  const credentials = await client.config.credentials();
  process.stdout.write(JSON.stringify({ accessKeyId: credentials.accessKeyId }));
} catch (error) {
  process.stdout.write(JSON.stringify({ error: error instanceof Error ? error.message : String(error) }));
}
