import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as cloudtrail from 'aws-cdk-lib/aws-cloudtrail';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface InvokeAuditTrailProps {
  /** The broker function: its invocations, unqualified and through any alias or version, are recorded. */
  readonly fn: lambda.IFunction;
  /** Retention of the trail's copy in CloudWatch Logs (the S3 copy is kept until deleted). */
  readonly logRetention: logs.RetentionDays;
}

/**
 * Who invoked the broker directly. A direct invocation carries no caller identity into the function, so its
 * "token served" line names the alias, not the caller; Lambda's Invoke is a CloudTrail data event, which no
 * trail records unless it asks for it. This trail asks for exactly the broker function's Invoke events (each
 * record names the caller in `userIdentity.arn` and the alias in `requestParameters`) and nothing else: no
 * management events, which the account's own trail already records, and no other function's.
 */
export class InvokeAuditTrail extends Construct {
  readonly bucket: s3.Bucket;
  readonly logGroup: logs.LogGroup;
  readonly trail: cloudtrail.Trail;

  constructor(scope: Construct, id: string, props: InvokeAuditTrailProps) {
    super(scope, id);
    this.bucket = new s3.Bucket(this, 'Records', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      // Audit records outlive the stack: deleting the broker must not delete the evidence of who used it.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'The bucket holds only CloudTrail log files of the broker function. Their integrity is proven by the ' +
        "trail's log file validation (signed digest files), and a server access log bucket would itself need " +
        'one. Record reads of it in the organization trail where a policy requires it.',
    });
    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention });
    this.trail = new cloudtrail.Trail(this, 'Trail', {
      bucket: this.bucket,
      sendToCloudWatchLogs: true,
      cloudWatchLogGroup: this.logGroup,
      enableFileValidation: true,
      // The function is regional and Lambda data events are recorded in its region.
      isMultiRegionTrail: false,
      includeGlobalServiceEvents: false,
    });
    const cfnTrail = this.trail.node.defaultChild as cloudtrail.CfnTrail;
    // Advanced selectors replace basic ones; a trail may not have both.
    cfnTrail.eventSelectors = undefined;
    cfnTrail.advancedEventSelectors = invokeEventSelectors(props.fn.functionArn);
  }
}

/**
 * The broker's invocations and no other function's: the unqualified ARN exactly, and every qualified one
 * (`<arn>:<alias or version>`). A prefix of the bare ARN would also match a function whose name merely starts
 * with this one's. Two selectors, because the field selectors within one must all match.
 */
export function invokeEventSelectors(functionArn: string): cloudtrail.CfnTrail.AdvancedEventSelectorProperty[] {
  const ofThisFunction = (name: string, arn: cloudtrail.CfnTrail.AdvancedFieldSelectorProperty) => ({
    name,
    fieldSelectors: [
      { field: 'eventCategory', equalTo: ['Data'] },
      { field: 'resources.type', equalTo: ['AWS::Lambda::Function'] },
      arn,
    ],
  });
  return [
    ofThisFunction('Invocations of the broker through an alias or version', {
      field: 'resources.ARN',
      startsWith: [`${functionArn}:`],
    }),
    ofThisFunction('Unqualified invocations of the broker', { field: 'resources.ARN', equalTo: [functionArn] }),
  ];
}
