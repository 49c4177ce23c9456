import { describe, expect, it } from 'vitest';
import winston from 'winston';
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node';
import { EventRecorder } from './events.ts';

/** Records what would be sent; the real API path is covered by the operator integration tests. */
function recorder(fail = false, dedupeWindowMs = 60_000) {
  const sent: CoreV1Event[] = [];
  const core = {
    createNamespacedEvent: ({ body }: { body: CoreV1Event }) => {
      sent.push(body);
      return fail ? Promise.reject(new Error('forbidden')) : Promise.resolve(body);
    },
  } as unknown as CoreV1Api;
  const events = new EventRecorder({
    core,
    component: 'strongroom-operator',
    instance: 'op-1',
    logger: winston.createLogger({ silent: true }),
    dedupeWindowMs,
  });
  return { sent, events };
}

const object = {
  apiVersion: 'strongroom.dev/v1alpha1',
  kind: 'ModelArtifact',
  metadata: { namespace: 'ml', name: 'resnet', uid: 'u-1', resourceVersion: '7' },
};

describe('EventRecorder', () => {
  it('writes an Event about the object, once per reason and message within the window', async () => {
    const { sent, events } = recorder();
    events.record(object, 'Warning', 'KeyError', 'boom');
    events.record(object, 'Warning', 'KeyError', 'boom');
    events.record(object, 'Warning', 'KeyError', 'another message');
    await events.flush();
    expect(sent).toHaveLength(2);
    expect(sent[0]).toMatchObject({
      type: 'Warning',
      reason: 'KeyError',
      message: 'boom',
      involvedObject: { kind: 'ModelArtifact', name: 'resnet', namespace: 'ml', uid: 'u-1' },
      reportingComponent: 'strongroom-operator',
      reportingInstance: 'op-1',
    });
    expect(sent[0]?.metadata.name).toMatch(/^resnet\.[0-9a-f]{16}$/);
  });

  it('records again after the window, and retries a failed write at the next occasion', async () => {
    const quick = recorder(false, 0);
    quick.events.record(object, 'Normal', 'Sealed', 'v1');
    quick.events.record(object, 'Normal', 'Sealed', 'v1');
    await quick.events.flush();
    expect(quick.sent).toHaveLength(2);

    const failing = recorder(true);
    failing.events.record(object, 'Normal', 'Sealed', 'v1');
    await failing.events.flush();
    failing.events.record(object, 'Normal', 'Sealed', 'v1');
    await failing.events.flush();
    expect(failing.sent).toHaveLength(2);
  });
});
