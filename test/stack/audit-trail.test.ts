import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { TokenBroker } from '../../lib/token-broker.js';
import { env, logicalIdOf, problemsOf, shipped, synth } from './support.js';

const functionArnOf = (template: Template) => ({
  'Fn::GetAtt': [logicalIdOf(template, 'AWS::Lambda::Function'), 'Arn'],
});

describe('the trail of direct invocations', () => {
  const { template } = synth(shipped);

  it('exists by default: a single-region trail with log file validation, to S3 and CloudWatch Logs', () => {
    template.resourceCountIs('AWS::CloudTrail::Trail', 1);
    template.hasResourceProperties('AWS::CloudTrail::Trail', {
      IsLogging: true,
      EnableLogFileValidation: true,
      IsMultiRegionTrail: false,
      IncludeGlobalServiceEvents: false,
      S3BucketName: { Ref: logicalIdOf(template, 'AWS::S3::Bucket') },
      CloudWatchLogsLogGroupArn: Match.objectLike({ 'Fn::GetAtt': Match.arrayWith(['Arn']) }),
      // Advanced selectors only: no basic selector that would add management events.
      EventSelectors: Match.absent(),
    });
  });

  it("records the broker function's Invoke data events only: through its aliases and versions, and unqualified", () => {
    const dataOfFunctions = [
      { Field: 'eventCategory', Equals: ['Data'] },
      { Field: 'resources.type', Equals: ['AWS::Lambda::Function'] },
    ];
    template.hasResourceProperties('AWS::CloudTrail::Trail', {
      AdvancedEventSelectors: [
        {
          Name: Match.anyValue(),
          FieldSelectors: [
            ...dataOfFunctions,
            {
              Field: 'resources.ARN',
              StartsWith: [{ 'Fn::Join': ['', [functionArnOf(template), ':']] }],
            },
          ],
        },
        {
          Name: Match.anyValue(),
          FieldSelectors: [...dataOfFunctions, { Field: 'resources.ARN', Equals: [functionArnOf(template)] }],
        },
      ],
    });
  });

  it('keeps the records in an encrypted, versioned, non-public bucket that outlives the stack', () => {
    template.hasResource('AWS::S3::Bucket', {
      DeletionPolicy: 'Retain',
      Properties: {
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        VersioningConfiguration: { Status: 'Enabled' },
      },
    });
  });

  it('denies every request to the bucket that is not over TLS', () => {
    const bucketArn = { 'Fn::GetAtt': [logicalIdOf(template, 'AWS::S3::Bucket'), 'Arn'] };
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            Resource: [bucketArn, { 'Fn::Join': ['', [bucketArn, '/*']] }],
          },
        ]),
      },
    });
  });

  it('is left out with auditTrail: false (cdk.json), and so is its bucket', () => {
    const without = synth({ ...shipped, auditTrail: false }).template;
    without.resourceCountIs('AWS::CloudTrail::Trail', 0);
    without.resourceCountIs('AWS::S3::Bucket', 0);
  });

  it('is left out with the construct prop auditTrail: false', () => {
    const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Own', { env });
    const broker = new TokenBroker(stack, 'Broker', { clients: shipped.clients, auditTrail: false });
    assert.equal(broker.invokeAuditTrail, undefined);
    Template.fromStack(stack).resourceCountIs('AWS::CloudTrail::Trail', 0);
  });

  it('refuses an auditTrail setting that is not a boolean, naming the field', () => {
    assert.match(problemsOf({ ...shipped, auditTrail: 'yes' }), /tokenBroker\.auditTrail: must be true or false/);
  });
});

describe('the API access log', () => {
  it("names the HTTP caller's IAM ARN and account, and the request id", () => {
    const { template } = synth(shipped);
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      AccessLogSetting: {
        DestinationArn: Match.anyValue(),
        Format: Match.serializedJson(
          Match.objectLike({
            requestId: '$context.requestId',
            userArn: '$context.identity.userArn',
            accountId: '$context.identity.accountId',
          }),
        ),
      },
    });
  });
});
