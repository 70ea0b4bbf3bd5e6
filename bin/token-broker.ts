import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../lambdas/core/config.js';
import { contextKey, parseTokenBrokerContext, readCdkJsonText } from '../lib/context.js';
import { defaultStackName, TokenBrokerStack } from '../lib/token-broker-stack.js';

const app = new App();

try {
  const cdkJsonText = readCdkJsonText();
  const config = parseTokenBrokerContext(app.node.tryGetContext(contextKey), {
    source: 'the CDK context (cdk.json)',
    ...(cdkJsonText === undefined ? {} : { cdkJsonText }),
  });
  // The stack name is the deployment's identity: another name is another, independent broker in the account.
  new TokenBrokerStack(app, config.stackName ?? defaultStackName, {
    config,
    description: 'token-broker: OAuth2 client-credentials tokens for IAM callers',
    // Environment-agnostic unless the CLI's profile provides one; no lookups are made either way.
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  });
} catch (error) {
  // A configuration mistake is the operator's to fix: say what and where, without a stack trace. The stack
  // checks what needs the environment (principals' accounts, the alarm topic's region) as it is built.
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(1);
  }
  throw error;
}

Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
