import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CompactMerkleTree,
  EMPTY_ROOT,
  MerkleTree,
  leafHash,
  nodeHash,
  rootOf,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Buffer => Buffer.from(s, 'hex');

// The RFC 6962 reference leaves and roots used by Certificate Transparency and transparency-dev/merkle.
const CT_LEAVES = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map(unhex);
const CT_ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

function ctTree(): MerkleTree {
  const t = new MerkleTree();
  for (const l of CT_LEAVES) t.push(leafHash(l));
  return t;
}

/** MTH exactly as RFC 6962 §2.1 defines it, over raw data, with its own SHA-256 calls: an independent oracle. */
function naiveMth(data: readonly Buffer[]): Buffer {
  const sha = (...parts: Buffer[]): Buffer => createHash('sha256').update(Buffer.concat(parts)).digest();
  if (data.length === 0) return sha();
  if (data.length === 1) return sha(Buffer.from([0]), data[0] as Buffer);
  let k = 1;
  while (k * 2 < data.length) k *= 2;
  return sha(Buffer.from([1]), naiveMth(data.slice(0, k)), naiveMth(data.slice(k)));
}

const flip = (b: Buffer, i: number): void => {
  b.writeUInt8(b.readUInt8(i) ^ 0x80, i);
};

const dataOf = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.from(`entry ${i}`));

describe('RFC 6962 hashing', () => {
  it('the empty tree hashes to SHA-256 of the empty string', () => {
    expect(hex(EMPTY_ROOT)).toBe(CT_ROOTS[0]);
    expect(hex(new MerkleTree().root())).toBe(CT_ROOTS[0]);
  });

  it('uses distinct leaf (0x00) and node (0x01) prefixes', () => {
    expect(hex(leafHash(Buffer.alloc(0)))).toBe(CT_ROOTS[1]);
    const a = leafHash(Buffer.from('a'));
    const b = leafHash(Buffer.from('b'));
    expect(nodeHash(a, b)).toEqual(
      createHash('sha256')
        .update(Buffer.concat([Buffer.from([1]), a, b]))
        .digest(),
    );
    // A leaf whose data is a node's preimage must not collide with that node (second-preimage resistance).
    expect(leafHash(Buffer.concat([a, b]))).not.toEqual(nodeHash(a, b));
  });

  it('matches the published roots for every size 0..8, incrementally and from scratch', () => {
    const t = ctTree();
    for (let n = 0; n <= 8; n++) {
      expect(hex(t.root(n)), `size ${n}`).toBe(CT_ROOTS[n]);
      expect(hex(rootOf(CT_LEAVES.slice(0, n).map((l) => leafHash(l)))), `size ${n}`).toBe(CT_ROOTS[n]);
    }
    const inc = new MerkleTree();
    for (let n = 0; n < 8; n++) {
      inc.push(leafHash(CT_LEAVES[n] as Buffer));
      expect(hex(inc.root())).toBe(CT_ROOTS[n + 1]);
    }
  });

  it('agrees with an independent RFC 6962 oracle for every size up to 70', () => {
    const data = dataOf(70);
    const t = new MerkleTree();
    for (let n = 1; n <= 70; n++) {
      t.push(leafHash(data[n - 1] as Buffer));
      expect(hex(t.root()), `size ${n}`).toBe(hex(naiveMth(data.slice(0, n))));
    }
  });
});

describe('inclusion proofs', () => {
  it('match the published vectors', () => {
    const t = ctTree();
    expect(t.inclusionProof(0, 8).map(hex)).toEqual([
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ]);
    expect(t.inclusionProof(5, 8).map(hex)).toEqual([
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ]);
    expect(t.inclusionProof(0, 1)).toEqual([]);
  });

  it('verify for every leaf of every tree size up to 40, and fail for the wrong leaf, index, size or root', () => {
    const data = dataOf(40);
    const t = new MerkleTree();
    for (const d of data) t.push(leafHash(d));
    for (let n = 1; n <= 40; n++) {
      const root = t.root(n);
      for (let i = 0; i < n; i++) {
        const proof = t.inclusionProof(i, n);
        const leaf = t.leaf(i);
        expect(verifyInclusion(i, n, leaf, proof, root), `${i} in ${n}`).toBe(true);
        expect(verifyInclusion(i, n, leafHash(Buffer.from('forged')), proof, root)).toBe(false);
        expect(verifyInclusion(i, n, leaf, proof, t.root(n === 1 ? 0 : n - 1))).toBe(false);
        if (n > 1) expect(verifyInclusion((i + 1) % n, n, leaf, proof, root)).toBe(false);
        if (proof.length > 0) {
          expect(verifyInclusion(i, n, leaf, proof.slice(0, -1), root)).toBe(false);
          expect(verifyInclusion(i, n, leaf, [...proof, root], root)).toBe(false);
          const bad = proof.map((p) => Buffer.from(p));
          flip(bad[0] as Buffer, 0);
          expect(verifyInclusion(i, n, leaf, bad, root)).toBe(false);
        }
      }
    }
  });

  it('refuse out-of-range requests', () => {
    const t = ctTree();
    expect(() => t.inclusionProof(8, 8)).toThrow(RangeError);
    expect(() => t.inclusionProof(0, 9)).toThrow(RangeError);
    expect(verifyInclusion(8, 8, t.leaf(0), [], t.root())).toBe(false);
    expect(verifyInclusion(-1, 8, t.leaf(0), [], t.root())).toBe(false);
  });
});

describe('consistency proofs', () => {
  it('match the published vectors', () => {
    const t = ctTree();
    expect(t.consistencyProof(1, 1)).toEqual([]);
    expect(t.consistencyProof(1, 8).map(hex)).toEqual([
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ]);
    expect(t.consistencyProof(2, 5).map(hex)).toEqual([
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ]);
    expect(t.consistencyProof(6, 8).map(hex)).toEqual([
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ]);
  });

  it('verify for every pair of sizes up to 33, and fail against a different history', () => {
    const data = dataOf(33);
    const t = new MerkleTree();
    for (const d of data) t.push(leafHash(d));
    // A fork: same first entries, then one differs.
    const forked = new MerkleTree();
    for (const [i, d] of data.entries()) forked.push(leafHash(i === 4 ? Buffer.from('forged') : d));
    for (let n2 = 1; n2 <= 33; n2++) {
      for (let n1 = 0; n1 <= n2; n1++) {
        const proof = t.consistencyProof(n1, n2);
        expect(verifyConsistency(n1, n2, proof, t.root(n1), t.root(n2)), `${n1} -> ${n2}`).toBe(true);
        if (n1 > 4) expect(verifyConsistency(n1, n2, proof, forked.root(n1), t.root(n2))).toBe(false);
        if (n1 < n2) {
          // Trees up to 4 leaves are identical; the empty tree is a prefix of every tree.
          expect(verifyConsistency(n1, n2, proof, t.root(n1), forked.root(n2))).toBe(n1 === 0 || n2 <= 4);
          if (proof.length > 0) {
            const bad = proof.map((p) => Buffer.from(p));
            flip(bad.at(-1) as Buffer, 3);
            expect(verifyConsistency(n1, n2, bad, t.root(n1), t.root(n2))).toBe(false);
          }
        }
      }
    }
  });

  it('refuse a shrinking tree and an empty proof between different sizes', () => {
    const t = ctTree();
    expect(() => t.consistencyProof(5, 4)).toThrow(RangeError);
    expect(verifyConsistency(5, 4, [], t.root(5), t.root(4))).toBe(false);
    expect(verifyConsistency(3, 8, [], t.root(3), t.root(8))).toBe(false);
    expect(verifyConsistency(8, 8, [], t.root(8), t.root(7))).toBe(false);
  });
});

describe('CompactMerkleTree', () => {
  it('has the root, size and last leaf of the full tree at every size, holding O(log n) nodes', () => {
    const full = new MerkleTree();
    const compact = new CompactMerkleTree();
    expect(compact.root()).toEqual(EMPTY_ROOT);
    expect(compact.lastLeaf).toBeUndefined();
    for (let i = 0; i < 300; i++) {
      const leaf = leafHash(Buffer.from(`entry ${String(i)}`));
      full.push(leaf);
      compact.push(leaf);
      expect(compact.size).toBe(full.size);
      expect(compact.root().equals(full.root())).toBe(true);
      expect(compact.lastLeaf?.equals(leaf)).toBe(true);
    }
    const restored = CompactMerkleTree.from(full);
    expect(restored.root().equals(full.root())).toBe(true);
    expect(restored.size).toBe(300);
    expect(() => {
      compact.push(Buffer.alloc(31));
    }).toThrow(RangeError);
  });
});
