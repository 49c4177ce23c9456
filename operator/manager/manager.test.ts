import { describe, expect, it } from 'vitest';
import { capturingLogger as jsonLogger } from '../../test/harness/logger.ts';
import { Manager, ManagerError, type Elector, type ElectorCallbacks } from './manager.ts';
import { RunnableGroup, type RunContext, type Runnable } from './runnable.ts';

/** Lets every pending promise callback run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise((resolve) => setImmediate(resolve));
}

/** A runnable that records "start:<name>", "stop:<name>" and "beforeStop:<name>" in a shared journal. */
class Part implements Runnable {
  readonly name: string;
  readonly needsLeader: boolean;
  readonly #journal: string[];
  context: RunContext | undefined;
  /** When set, start() waits for this before resolving. */
  gate: Promise<void> | undefined;
  startError: Error | undefined;
  stopError: Error | undefined;
  starts = 0;
  stops = 0;

  constructor(journal: string[], name: string, needsLeader = false) {
    this.#journal = journal;
    this.name = name;
    this.needsLeader = needsLeader;
  }

  async start(context: RunContext): Promise<void> {
    this.context = context;
    this.starts++;
    this.#journal.push(`start:${this.name}`);
    if (this.gate) await this.gate;
    if (this.startError) throw this.startError;
  }

  async stop(): Promise<void> {
    this.stops++;
    this.#journal.push(`stop:${this.name}`);
    await Promise.resolve();
    if (this.stopError) throw this.stopError;
  }

  beforeStop(): void {
    this.#journal.push(`beforeStop:${this.name}`);
  }
}

/** A hand-driven elector: the test decides when the Lease is acquired or lost. */
class FakeElector implements Elector {
  readonly callbacks: ElectorCallbacks;
  readonly #journal: string[];
  started = false;
  stopped = false;
  leading = false;

  constructor(journal: string[], callbacks: ElectorCallbacks) {
    this.#journal = journal;
    this.callbacks = callbacks;
  }

  start(): void {
    this.started = true;
    this.#journal.push('campaign');
  }

  acquire(): void {
    this.leading = true;
    this.callbacks.onStartedLeading();
  }

  lose(): void {
    this.leading = false;
    this.callbacks.onStoppedLeading();
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.leading) this.lose();
    this.#journal.push('release');
    return Promise.resolve();
  }
}

function setup(options: { election?: boolean } = {}) {
  const journal: string[] = [];
  const electors: FakeElector[] = [];
  const fatal: string[] = [];
  const leading: boolean[] = [];
  const { logger, lines } = jsonLogger();
  const manager = new Manager({
    logger,
    identity: 'replica-a',
    onFatal: (reason) => fatal.push(reason),
    onLeading: (l) => leading.push(l),
    ...(options.election === false
      ? {}
      : {
          elector: (callbacks: ElectorCallbacks) => {
            const e = new FakeElector(journal, callbacks);
            electors.push(e);
            return e;
          },
        }),
  });
  const part = (name: string, needsLeader = false): Part => new Part(journal, name, needsLeader);
  return { journal, electors, fatal, leading, lines, manager, part };
}

describe('Manager', () => {
  it('starts the runnables in the order added, each awaited, then campaigns', async () => {
    const { journal, manager, part, electors } = setup();
    const a = part('a');
    const b = part('b');
    const c = part('c');
    const gate = Promise.withResolvers<undefined>();
    a.gate = gate.promise;
    manager.add(a, b).add(c);
    const started = manager.start();
    await settle();
    expect(journal).toEqual(['start:a']); // b waits for a
    gate.resolve(undefined);
    await started;
    expect(journal).toEqual(['start:a', 'start:b', 'start:c', 'campaign']);
    expect(electors).toHaveLength(1);
    expect(manager.electing()).toBe(true);
  });

  it('stops in the reverse order, after every beforeStop, and only once', async () => {
    const { journal, manager, part, lines } = setup({ election: false });
    const parts = [part('a'), part('b'), part('c')];
    manager.add(...parts);
    await manager.start();
    journal.length = 0;
    const first = manager.stop();
    expect(manager.stop()).toBe(first);
    await first;
    await manager.stop();
    expect(journal).toEqual(['beforeStop:a', 'beforeStop:b', 'beforeStop:c', 'stop:c', 'stop:b', 'stop:a']);
    expect(parts.map((p) => p.stops)).toEqual([1, 1, 1]);
    // Without leader-only runnables the Lease step (here without an elector) comes first.
    expect(lines.filter((l) => l.message === 'shutdown step done').map((l) => l.step)).toEqual([
      'lease',
      'c',
      'b',
      'a',
    ]);
  });

  it('runs leader-only runnables only while leading: started on acquiring, stopped in reverse on losing', async () => {
    const { journal, manager, part, electors, leading, lines } = setup();
    const health = part('health');
    const queues = part('queues', true);
    const broker = part('broker', true);
    const webhook = part('webhook');
    manager.add(health, queues, broker, webhook);
    await manager.start();
    await settle();
    // Not leading yet: only the runnables that do not need the leader run.
    expect(journal).toEqual(['start:health', 'start:webhook', 'campaign']);
    expect(manager.leading()).toBe(false);

    electors[0]?.acquire();
    await settle();
    expect(journal.slice(3)).toEqual(['start:queues', 'start:broker']);
    expect(manager.leading()).toBe(true);
    expect(leading).toEqual([true]);
    expect(lines.some((l) => l.message === 'leading: starting controllers')).toBe(true);

    // Losing the Lease: the broker stops first, then the queues, then a new campaign with a new elector.
    electors[0]?.lose();
    await settle();
    expect(journal.slice(5)).toEqual(['stop:broker', 'stop:queues', 'campaign']);
    expect(electors).toHaveLength(2);
    expect(leading).toEqual([true, false]);
    expect(
      lines.some((l) => l.message === 'lost the Lease: stopping controllers and campaigning again'),
    ).toBe(true);
    expect(health.stops + webhook.stops).toBe(0);

    // A second term starts the leader-only runnables again.
    electors[1]?.acquire();
    await settle();
    expect(journal.slice(8)).toEqual(['start:queues', 'start:broker']);
    expect([queues.starts, broker.starts]).toEqual([2, 2]);
  });

  it('on stop while leading: later runnables, then the term in reverse, then the Lease, then the earlier ones', async () => {
    const { journal, manager, part, electors, leading } = setup();
    manager.add(
      part('health'),
      part('informers'),
      part('queues', true),
      part('broker', true),
      part('webhook'),
    );
    await manager.start();
    electors[0]?.acquire();
    await settle();
    journal.length = 0;
    await manager.stop();
    expect(journal).toEqual([
      'beforeStop:health',
      'beforeStop:informers',
      'beforeStop:webhook',
      'beforeStop:queues',
      'beforeStop:broker',
      'stop:webhook',
      'stop:broker',
      'stop:queues',
      'release',
      'stop:informers',
      'stop:health',
    ]);
    // The elector's stop reported the end of leadership; the manager did not campaign again.
    expect(leading).toEqual([true, false]);
    expect(electors).toHaveLength(1);
    expect(electors[0]?.stopped).toBe(true);
  });

  it('without leader election, leads at once and the leader-only runnables start with the others', async () => {
    const { journal, manager, part, electors } = setup({ election: false });
    manager.add(part('informers'), part('queues', true), part('resync'));
    await manager.start();
    await settle();
    expect(journal).toEqual(['start:informers', 'start:resync', 'start:queues']);
    expect(electors).toHaveLength(0);
    expect(manager.electing()).toBe(true);
    journal.length = 0;
    await manager.stop();
    expect(journal.filter((s) => s.startsWith('stop:'))).toEqual([
      'stop:resync',
      'stop:queues',
      'stop:informers',
    ]);
  });

  it('a failing start rejects, starts nothing after it, does not campaign; stop stops what started', async () => {
    const { journal, manager, part, electors } = setup();
    const a = part('a');
    const b = part('b');
    const c = part('c');
    const leader = part('queues', true);
    b.startError = new Error('port in use');
    manager.add(a, b, leader, c);
    await expect(manager.start()).rejects.toThrow('port in use');
    await settle();
    expect(journal).toEqual(['start:a', 'start:b']);
    expect(electors).toHaveLength(0);
    expect(manager.electing()).toBe(false);
    journal.length = 0;
    await manager.stop();
    // b may have started halfway: it is stopped too; c never started and is not.
    expect(journal).toEqual(['beforeStop:a', 'beforeStop:b', 'stop:b', 'stop:a']);
    expect([c.starts, c.stops, leader.starts, leader.stops]).toEqual([0, 0, 0, 0]);
  });

  it('a stop during start stops the runnable still starting and makes start reject', async () => {
    const { journal, manager, part } = setup();
    const a = part('a');
    const b = part('b');
    const gate = Promise.withResolvers<undefined>();
    a.gate = gate.promise;
    manager.add(a, b);
    const started = manager.start();
    await settle();
    const stopped = manager.stop();
    gate.resolve(undefined);
    await expect(started).rejects.toBeInstanceOf(ManagerError);
    await stopped;
    expect(journal).toEqual(['start:a', 'beforeStop:a', 'stop:a']);
    expect(b.starts).toBe(0);
  });

  it('a leader-only runnable that cannot start is fatal', async () => {
    const { manager, part, electors, fatal } = setup();
    const broker = part('broker', true);
    broker.startError = new Error('no audit keys');
    manager.add(part('queues', true), broker);
    await manager.start();
    electors[0]?.acquire();
    await settle();
    expect(fatal).toEqual(['broker could not start: Error: no audit keys']);
  });

  it('a runnable reports a background failure through its context', async () => {
    const { manager, part, fatal } = setup();
    const webhook = part('webhook');
    manager.add(webhook);
    await manager.start();
    webhook.context?.fatal('the injection webhook could not start');
    expect(fatal).toEqual(['the injection webhook could not start']);
  });

  it('a term that cannot stop after a lost Lease is fatal and is not campaigned again', async () => {
    const { manager, part, electors, fatal } = setup();
    const queues = part('queues', true);
    const broker = part('broker', true);
    broker.stopError = new Error('stuck');
    manager.add(queues, broker);
    await manager.start();
    electors[0]?.acquire();
    await settle();
    electors[0]?.lose();
    await settle();
    // Every runnable of the term was still stopped.
    expect([queues.stops, broker.stops]).toEqual([1, 1]);
    expect(fatal).toEqual(['could not stop the controllers after losing the Lease: Error: stuck']);
    expect(electors).toHaveLength(1);
  });

  it('shutdown waits for a term still ending after a lost Lease, and does not campaign again', async () => {
    const { journal, manager, part, electors } = setup();
    const queues = part('queues', true);
    manager.add(part('informers'), queues);
    await manager.start();
    electors[0]?.acquire();
    await settle();
    const drained = Promise.withResolvers<undefined>();
    queues.stop = async () => {
      journal.push('stop:queues');
      await drained.promise;
      journal.push('drained:queues');
    };
    electors[0]?.lose();
    const stopped = manager.stop();
    await settle();
    expect(journal).not.toContain('stop:informers');
    drained.resolve(undefined);
    await stopped;
    expect(journal.slice(journal.indexOf('stop:queues'))).toEqual([
      'stop:queues',
      'beforeStop:informers',
      'drained:queues',
      'release',
      'stop:informers',
    ]);
    expect(electors).toHaveLength(1);
  });

  it('a failing shutdown step is logged and the next steps still run', async () => {
    const { manager, part, lines } = setup({ election: false });
    const a = part('a');
    const b = part('b');
    b.stopError = new Error('flush failed');
    manager.add(a, b);
    await manager.start();
    await manager.stop();
    expect(a.stops).toBe(1);
    expect(lines.filter((l) => l.message === 'shutdown step failed').map((l) => l.step)).toEqual(['b']);
  });

  it('refuses runnables added after start, and a second start', async () => {
    const { manager, part } = setup();
    manager.add(part('a'));
    await manager.start();
    expect(() => manager.add(part('b'))).toThrow(ManagerError);
    await expect(manager.start()).rejects.toBeInstanceOf(ManagerError);
  });
});

describe('RunnableGroup', () => {
  it('starts its members in order and stops them together', async () => {
    const journal: string[] = [];
    const a = new Part(journal, 'a', true);
    const b = new Part(journal, 'b', true);
    const gates = [Promise.withResolvers<undefined>(), Promise.withResolvers<undefined>()];
    const group = new RunnableGroup('queues', [a, b]);
    expect(group.needsLeader).toBe(true);
    await group.start({ fatal: () => undefined });
    expect(journal).toEqual(['start:a', 'start:b']);
    a.stop = async () => {
      journal.push('stop:a');
      await gates[0]?.promise;
      journal.push('stopped:a');
    };
    b.stop = async () => {
      journal.push('stop:b');
      await gates[1]?.promise;
      journal.push('stopped:b');
    };
    const stopped = group.stop();
    await settle();
    // Both stop at once: b is not waiting for a.
    expect(journal.slice(2)).toEqual(['stop:a', 'stop:b']);
    gates[1]?.resolve(undefined);
    gates[0]?.resolve(undefined);
    await stopped;
    expect(journal.slice(4)).toEqual(['stopped:b', 'stopped:a']);
  });

  it('refuses members that disagree on needing the leader', () => {
    const journal: string[] = [];
    expect(() => new RunnableGroup('mixed', [new Part(journal, 'a', true), new Part(journal, 'b')])).toThrow(
      TypeError,
    );
  });
});
