import { describe, expect, it } from 'vitest';
import { BrokerError, callerDenial } from './errors.ts';

describe('what a refused caller is told', () => {
  it('is the reason and a generic sentence, pointing to where the details are', () => {
    expect(callerDenial('NoGrant')).toBe(
      "NoGrant: no AccessGrant allows this workload to read this version; details are in the pod's events",
    );
    expect(callerDenial('NoPublishGrant', "the broker's audit log")).toBe(
      "NoPublishGrant: no AccessGrant allows this workload to publish this version; details are in the broker's audit log",
    );
    expect(callerDenial('SomethingNew')).toBe(
      "SomethingNew: the request is refused; details are in the pod's events",
    );
  });

  it('is the public message when there is one, and the message otherwise', () => {
    const detailed = 'No AccessGrant releases prod/resnet@v1 to dev/reader (closest: prod/resnet-readers)';
    const refused = new BrokerError('PERMISSION_DENIED', 'no-grant', detailed, {
      publicMessage: callerDenial('NoGrant'),
    });
    expect(refused.message).toBe(detailed);
    expect(refused.callerMessage).not.toMatch(/prod|dev|reader/);
    expect(new BrokerError('INVALID_ARGUMENT', 'invalid-request', 'bad version').callerMessage).toBe(
      'bad version',
    );
  });
});
