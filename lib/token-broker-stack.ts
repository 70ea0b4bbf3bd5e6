import { CfnOutput, Stack, type StackProps, Token } from 'aws-cdk-lib';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import { ConfigError } from '../lambdas/core/config.js';
import { runtimeSettingValuesOf } from '../lambdas/core/settings.js';
import type { TokenBrokerContext } from './context.js';
import { TokenBroker } from './token-broker.js';

export const defaultStackName = 'TokenBroker';

export interface TokenBrokerStackProps extends StackProps {
  /** The validated `tokenBroker` context (see `parseTokenBrokerContext`). */
  readonly config: TokenBrokerContext;
}

export class TokenBrokerStack extends Stack {
  readonly broker: TokenBroker;

  constructor(scope: Construct, id: string, props: TokenBrokerStackProps) {
    super(scope, id, props);
    const { config } = props;
    const alarmTopic = config.alarmTopicArn === undefined ? undefined : this.alarmTopic(config.alarmTopicArn);
    this.broker = new TokenBroker(this, 'TokenBroker', {
      clients: config.clients,
      ...runtimeSettingValuesOf(config),
      ...(config.allowedAccounts === undefined ? {} : { allowedAccounts: config.allowedAccounts }),
      ...(config.allowedOrgId === undefined ? {} : { allowedOrgId: config.allowedOrgId }),
      ...(config.vpcEndpointIds === undefined ? {} : { vpcEndpointIds: config.vpcEndpointIds }),
      ...(alarmTopic === undefined ? {} : { alarmTopic }),
      ...(config.stage === undefined ? {} : { stageName: config.stage }),
      ...(config.throttle === undefined ? {} : { throttle: config.throttle }),
      ...(config.adminPrincipals === undefined ? {} : { adminPrincipals: config.adminPrincipals }),
      ...(config.auditTrail === undefined ? {} : { auditTrail: config.auditTrail }),
      ...(config.legacyRootAliases === undefined ? {} : { legacyRootAliases: config.legacyRootAliases }),
      ...(config.tokenEndpointHosts === undefined ? {} : { tokenEndpointHosts: config.tokenEndpointHosts }),
      // Each deployment's metrics carry its own stack name as `service`, so its alarms read only its own; the
      // default deployment keeps the dimension it has always had.
      ...(this.stackName === defaultStackName ? {} : { serviceName: this.stackName }),
    });

    const { broker } = this;
    new CfnOutput(this, 'ApiUrl', { value: broker.api.url, description: 'Base URL of the API stage' });
    new CfnOutput(this, 'FunctionName', { value: broker.fn.functionName, description: 'The broker function' });
    new CfnOutput(this, 'FunctionArn', {
      value: broker.fn.functionArn,
      description: 'The broker function (unqualified)',
    });
    new CfnOutput(this, 'TableName', { value: broker.table.tableName, description: 'The token cache table' });
    new CfnOutput(this, 'SealingSecretArn', {
      value: broker.sealingSecret.secretArn,
      description: 'The secret holding the key cached tokens are sealed under (npm run start:aws reads it)',
    });
    new CfnOutput(this, 'DashboardName', {
      value: broker.dashboard.dashboardName,
      description: "CloudWatch dashboard of the broker's metrics",
    });
    if (broker.hostedJwks !== undefined) {
      new CfnOutput(this, 'JwksBaseUrl', {
        value: broker.hostedJwks.url.url,
        description: 'Hosted JWKS: a client publishes its public keys at <JwksBaseUrl>clients/<client>/jwks.json',
      });
    }
    // No output per client: CloudFormation allows 200 outputs per stack, and every client's addresses follow
    // from these (alias ARN `<FunctionArn>:<client>` or `:<client>_admin`, token URL `<ApiUrl>clients/<client>/token`).
  }

  /** CloudWatch alarm actions publish only to a topic in the alarm's own region. */
  private alarmTopic(arn: string): sns.ITopic {
    const topicRegion = arn.split(':')[3];
    if (!Token.isUnresolved(this.region) && topicRegion !== this.region) {
      throw new ConfigError(
        `tokenBroker.alarmTopicArn: the topic is in ${topicRegion}, but alarms can only notify a topic in ` +
          `their own region (${this.region})`,
      );
    }
    return sns.Topic.fromTopicArn(this, 'AlarmTopic', arn);
  }
}
