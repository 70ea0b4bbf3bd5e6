import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../lambdas/core/config.js';
import { contextKey, parseTokenBrokerContext } from '../lib/context.js';
import { TokenBrokerStack } from '../lib/token-broker-stack.js';

const app = new App();

let config: ReturnType<typeof parseTokenBrokerContext>;
try {
  config = parseTokenBrokerContext(app.node.tryGetContext(contextKey));
} catch (error) {
  // A configuration mistake is the operator's to fix: say what and where, without a stack trace.
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(1);
  }
  throw error;
}

new TokenBrokerStack(app, 'TokenBroker', {
  config,
  description: 'token-broker: OAuth2 client-credentials tokens for IAM callers',
  // Environment-agnostic unless the CLI's profile provides one; no lookups are made either way.
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});

Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
