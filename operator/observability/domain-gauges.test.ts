import { describe, expect, it } from 'vitest';
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import { updateDomainGauges } from './domain-gauges.ts';
import { OperatorMetrics } from './metrics.ts';

const artifact = (namespace: string, classification: string, ready?: string): ModelArtifact =>
  ({
    metadata: { namespace, name: `a-${Math.random()}` },
    spec: { classification },
    ...(ready ? { status: { conditions: [{ type: 'Ready', status: ready }] } } : {}),
  }) as unknown as ModelArtifact;
const grant = (namespace: string, phase?: string): AccessGrant =>
  ({ metadata: { namespace }, spec: {}, ...(phase ? { status: { phase } } : {}) }) as unknown as AccessGrant;

describe('updateDomainGauges', () => {
  it('counts artifacts by namespace, classification and readiness, grants by namespace and phase', async () => {
    const metrics = new OperatorMetrics();
    updateDomainGauges(
      metrics,
      [artifact('ml', 'internal', 'True'), artifact('ml', 'internal', 'True'), artifact('ml', 'restricted')],
      [grant('ml', 'Active'), grant('ops')],
    );
    const text = await metrics.registry.metrics();
    expect(text).toContain('strongroom_artifacts{namespace="ml",classification="internal",ready="True"} 2');
    expect(text).toContain(
      'strongroom_artifacts{namespace="ml",classification="restricted",ready="Unknown"} 1',
    );
    expect(text).toContain('strongroom_grants{namespace="ml",phase="Active"} 1');
    expect(text).toContain('strongroom_grants{namespace="ops",phase="Unknown"} 1');

    // Series no longer counted disappear.
    updateDomainGauges(metrics, [], [grant('ml', 'Expired')]);
    const after = await metrics.registry.metrics();
    expect(after).not.toContain('strongroom_artifacts{');
    expect(after).not.toContain('phase="Active"');
    expect(after).toContain('strongroom_grants{namespace="ml",phase="Expired"} 1');
  });

  it('counts the grants waiting for approvals by classification (their status, else their artifact)', async () => {
    const metrics = new OperatorMetrics();
    const model = {
      metadata: { namespace: 'ml', name: 'llm' },
      spec: { classification: 'restricted' },
    } as unknown as ModelArtifact;
    const waiting = (classification?: string): AccessGrant =>
      ({
        metadata: { namespace: 'ml' },
        spec: { artifactRef: { name: 'llm' } },
        status: {
          phase: 'Pending',
          reason: 'AwaitingApproval',
          ...(classification === undefined ? {} : { classification }),
        },
      }) as unknown as AccessGrant;
    const notYet = {
      metadata: { namespace: 'ml' },
      spec: { artifactRef: { name: 'llm' } },
      status: { phase: 'Pending', reason: 'NotYetValid' },
    } as unknown as AccessGrant;
    updateDomainGauges(
      metrics,
      [model],
      [waiting('confidential'), waiting('confidential'), waiting(), notYet],
    );
    let text = await metrics.registry.metrics();
    expect(text).toContain('strongroom_approvals_pending{classification="confidential"} 2\n');
    expect(text).toContain('strongroom_approvals_pending{classification="restricted"} 1\n');
    // Approved: the series goes.
    updateDomainGauges(metrics, [model], [waiting('confidential')]);
    text = await metrics.registry.metrics();
    expect(text).toContain('strongroom_approvals_pending{classification="confidential"} 1\n');
    expect(text).not.toContain('strongroom_approvals_pending{classification="restricted"}');
  });
});
