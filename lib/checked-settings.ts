import { Aws, CfnRule, Fn, Stack, Token } from 'aws-cdk-lib';
import { RegionInfo } from 'aws-cdk-lib/region-info';
import type { Construct } from 'constructs';
import {
  arnsOfRegistry,
  type ClientRegistry,
  configErrorOf,
  type NamedArn,
  partitionOf,
  secretIdentityOfArn,
  sharedSecretProblem,
} from '../lambdas/core/config.js';
import {
  readTokenBrokerSettings,
  type SettingName,
  settingNames,
  unadmittedPrincipals,
} from '../lambdas/core/settings.js';
import type { TokenBrokerProps } from './token-broker-props.js';

// Powertools puts the service name in every metric's `service` dimension; CloudWatch allows 1,024 characters.
const serviceNamePattern = /^[A-Za-z0-9_.-]{1,128}$/;

/** The construct's props in the shape of cdk.json's `tokenBroker` settings, for the parser they share. */
function settingsOfProps(props: TokenBrokerProps): Record<string, unknown> {
  const settings: Record<string, unknown> = { clients: props.clients };
  for (const field of settingNames.filter(namedAlikeInProps)) {
    if (props[field] !== undefined) settings[field] = props[field];
  }
  if (props.stageName !== undefined) settings.stage = props.stageName;
  return settings;
}

/** The settings a prop of the same name carries: not the clients, nor those the stack or the props spell apart. */
type NamedAlikeInProps = Exclude<SettingName, 'clients' | 'stage' | 'stackName' | 'alarmTopicArn'>;
function namedAlikeInProps(name: SettingName): name is NamedAlikeInProps {
  return name !== 'clients' && name !== 'stage' && name !== 'stackName' && name !== 'alarmTopicArn';
}

/**
 * The construct is also used without the CDK app, so it checks its props with the parser `cdk synth` and the
 * local server use (lambdas/core/settings.ts), then what only the stack can tell: the deploying account's
 * principals, a secret named once by name and once by ARN, and the stack's partition. Every problem is
 * reported in one error.
 */
export function checkedClientsOf(scope: Construct, props: TokenBrokerProps, serviceName: string): ClientRegistry {
  const stack = Stack.of(scope);
  const { settings, problems } = readTokenBrokerSettings(settingsOfProps(props));
  if (!serviceNamePattern.test(serviceName)) {
    problems.push(`serviceName: must be a metric dimension value (${serviceNamePattern.source})`);
  }
  if (settings !== undefined) {
    const { clients } = settings;
    if (props.allowedAccounts === undefined && props.allowedOrgId === undefined && !Token.isUnresolved(stack.account)) {
      problems.push(...unadmittedPrincipals(clients, [stack.account], 'the deploying account'));
    }
    problems.push(...secretsNamedTwice(clients, stack));
    const arns: NamedArn[] = [
      ...arnsOfRegistry(clients),
      ...(props.adminPrincipals ?? []).map((arn, index) => ({ at: `tokenBroker.adminPrincipals[${index}]`, arn })),
      ...(props.alarmTopic === undefined || Token.isUnresolved(props.alarmTopic.topicArn)
        ? []
        : [{ at: 'tokenBroker.alarmTopicArn', arn: props.alarmTopic.topicArn }]),
    ];
    problems.push(...stackPartitionProblems(scope, arns));
  }
  if (problems.length > 0 || settings === undefined) throw configErrorOf(problems);
  return settings.clients;
}

/**
 * A name and an ARN of one secret, once the stack's account and region tell where a name resolves: one secret
 * holds one OAuth client's credentials. (Two names or two ARNs of one secret are the parser's to find.)
 */
function secretsNamedTwice(clients: ClientRegistry, stack: Stack): string[] {
  if (Token.isUnresolved(stack.account) || Token.isUnresolved(stack.region)) return [];
  const first = new Map<string, { name: string; byArn: boolean }>();
  const problems: string[] = [];
  for (const [name, { secretName }] of Object.entries(clients)) {
    const byArn = secretName.startsWith('arn:');
    const identity = byArn ? secretIdentityOfArn(secretName) : `${stack.region}:${stack.account}:${secretName}`;
    const earlier = first.get(identity);
    if (earlier === undefined) first.set(identity, { name, byArn });
    else if (earlier.byArn !== byArn) {
      problems.push(
        sharedSecretProblem(`tokenBroker.clients.${name}.secretName`, `tokenBroker.clients.${earlier.name}.secretName`),
      );
    }
  }
  return problems;
}

/**
 * Every ARN the settings name must be in the stack's partition: IAM refuses a principal of another partition
 * in a policy, and the function could reach no secret or key there. With the region known the partition is
 * known at synth; env-agnostic, a CloudFormation rule makes the deploy fail before any resource is touched.
 * The parser has already refused ARNs of more than one partition, so the first one's stands for all.
 */
function stackPartitionProblems(scope: Construct, arns: readonly NamedArn[]): string[] {
  const first = arns[0];
  if (first === undefined) return [];
  const stack = Stack.of(scope);
  // Without the partition-literals flag the partition stays a token even where the region tells it.
  const stackPartition = !Token.isUnresolved(stack.partition)
    ? stack.partition
    : Token.isUnresolved(stack.region)
      ? undefined
      : RegionInfo.get(stack.region).partition;
  if (stackPartition === undefined) {
    const partition = partitionOf(first.arn);
    new CfnRule(scope, 'Partition', {
      assertions: [
        {
          assert: Fn.conditionEquals(Aws.PARTITION, partition),
          assertDescription:
            `The token broker's settings name ARNs of partition ${partition} (${first.at}): deploy it in a ` +
            'region of that partition, or name ARNs of this one',
        },
      ],
    });
    return [];
  }
  return arns
    .filter(({ arn }) => partitionOf(arn) !== stackPartition)
    .map(
      ({ at, arn }) =>
        `${at}: is in partition ${partitionOf(arn)}, but the stack is in ${stackPartition}: IAM there refuses ` +
        'the ARNs of another partition',
    );
}
