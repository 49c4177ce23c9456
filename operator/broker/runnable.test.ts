import { describe, expect, it } from 'vitest';
import { writerName } from './runnable.ts';

describe('writerName', () => {
  it('turns a replica identity into an audit log writer name', () => {
    expect(writerName('strongroom-operator-7d9f_1a2b3c4d')).toBe('strongroom-operator-7d9f-1a2b3c4d');
    expect(writerName('Node.A')).toBe('node.a');
    expect(writerName('__x__')).toBe('x');
    expect(writerName('___')).toBe('operator');
    expect(writerName(`${'a'.repeat(62)}_b`)).toBe('a'.repeat(62));
    expect(writerName('a'.repeat(100))).toHaveLength(63);
  });
});
