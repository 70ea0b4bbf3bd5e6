import { createHash } from 'node:crypto';
import { CfnOutput, CfnResource, NestedStack, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { adminAliasOf, clientAliasOf } from '../lambdas/contract.js';

/*
 * Per-client aliases and grants live in this many nested stacks, a client's stack chosen by a hash of its name:
 * adding or removing a client never moves another client's alias to another stack (which would replace it).
 * 16 stacks hold ~200 clients with room to spare under CloudFormation's 500 resources per stack.
 */
export const clientStackCount = 16;
// CloudFormation's quotas per template (a nested stack's included).
const maxResourcesPerStack = 500;
const maxOutputsPerStack = 200;

/** The nested stack (0 … clientStackCount - 1) a client's aliases and grants live in: a hash of its name only. */
export function clientStackIndexOf(clientName: string): number {
  return createHash('sha256').update(clientName).digest().readUInt32BE(0) % clientStackCount;
}

/** The nested stacks (`Clients00` … `Clients15`) of the per-client aliases and grants, each made with its first client. */
export class ClientStacks {
  private readonly byIndex = new Map<number, NestedStack>();

  constructor(private readonly scope: Construct) {}

  /** The nested stack of a client's aliases and grants. */
  of(clientName: string): NestedStack {
    const index = clientStackIndexOf(clientName);
    const existing = this.byIndex.get(index);
    if (existing !== undefined) return existing;
    const created = new NestedStack(this.scope, `Clients${String(index).padStart(2, '0')}`, {
      description: `token-broker: Lambda aliases and grants of the clients in bucket ${index} of ${clientStackCount}`,
    });
    this.byIndex.set(index, created);
    return created;
  }

  /** Those made so far, in the order of their first clients. */
  get all(): NestedStack[] {
    return [...this.byIndex.values()];
  }
}

/** A client's two aliases: `<client>` for tokens, `<client>_admin` for invalidation. */
export interface ClientAliasPair {
  readonly token: lambda.Alias;
  readonly admin: lambda.Alias;
}

/**
 * The handler serves a direct invocation only through the alias named after the requested client, and an
 * invalidation only through the client's admin alias: both on the one published version, in `scope`.
 */
export function clientAliasPair(scope: Construct, clientName: string, version: lambda.IVersion): ClientAliasPair {
  return {
    token: new lambda.Alias(scope, `ClientAlias-${clientName}`, { aliasName: clientAliasOf(clientName), version }),
    admin: new lambda.Alias(scope, `AdminAlias-${clientName}`, { aliasName: adminAliasOf(clientName), version }),
  };
}

/** CloudFormation's per-template quotas, for each of `stacks` (the broker's and its nested ones). */
export function stackQuotaProblems(stacks: readonly Stack[]): string[] {
  const problems: string[] = [];
  for (const stack of stacks) {
    let resources = 0;
    let outputs = 0;
    for (const construct of stack.node.findAll()) {
      if (Stack.of(construct) !== stack) continue;
      if (construct instanceof CfnResource) resources += 1;
      else if (construct instanceof CfnOutput) outputs += 1;
    }
    const which = stack.nested
      ? `nested stack ${stack.node.path} (the aliases and grants of the clients hashed to it)`
      : `stack ${stack.node.path}`;
    if (resources > maxResourcesPerStack) {
      problems.push(
        `${which} would have ${resources} resources, over CloudFormation's limit of ${maxResourcesPerStack} ` +
          'per stack: grant fewer principals per client, or split the registry over several deployments',
      );
    }
    if (outputs > maxOutputsPerStack) {
      problems.push(
        `${which} would have ${outputs} outputs, over CloudFormation's limit of ${maxOutputsPerStack} per ` +
          'stack: every reference from another stack to a resource of this one is an output',
      );
    }
  }
  return problems;
}
