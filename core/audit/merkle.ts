/**
 * RFC 6962 Merkle tree hashing (as restated in RFC 9162 §2.1), pure: leaf = SHA-256(0x00 ‖ data),
 * node = SHA-256(0x01 ‖ left ‖ right), the empty tree hashes to SHA-256(""). Inclusion and consistency
 * proofs are generated from the leaf hashes and verified with the RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms.
 */
import { createHash, hash } from 'node:crypto';

export const HASH_SIZE = 32;

// One-shot hashing over a reused scratch buffer: about a third cheaper than a Hash object per call, and this
// runs once per entry on append and twice per entry on verification.
let leafScratch = Buffer.alloc(4096);
const nodeScratch = Buffer.alloc(1 + 2 * HASH_SIZE);
nodeScratch[0] = 0x01;

/** The RFC 6962 leaf hash of `data`: SHA-256(0x00 ‖ data). */
export function leafHash(data: Uint8Array): Buffer {
  if (data.length + 1 > leafScratch.length) leafScratch = Buffer.alloc(2 * (data.length + 1));
  leafScratch[0] = 0x00;
  leafScratch.set(data, 1);
  return hash('sha256', leafScratch.subarray(0, data.length + 1), 'buffer');
}

/** The RFC 6962 interior node hash of two child hashes: SHA-256(0x01 ‖ left ‖ right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) {
    return createHash('sha256')
      .update(Buffer.from([0x01]))
      .update(left)
      .update(right)
      .digest();
  }
  nodeScratch.set(left, 1);
  nodeScratch.set(right, 1 + HASH_SIZE);
  return hash('sha256', nodeScratch, 'buffer');
}

/** The root of the empty tree: SHA-256 of the empty string. */
export const EMPTY_ROOT: Buffer = hash('sha256', Buffer.alloc(0), 'buffer');

/**
 * An append-only tree that keeps every leaf hash (32 bytes a leaf) and the roots of its perfect subtrees,
 * so appending and reading the current root are O(log n), and proofs for any earlier size can be built.
 */
export class MerkleTree {
  readonly #leaves: Buffer[] = [];
  /** Roots of the perfect subtrees making up the tree, largest (leftmost) first. */
  readonly #stack: Buffer[] = [];

  get size(): number {
    return this.#leaves.length;
  }

  /** Appends a leaf by its leaf hash (see leafHash). */
  push(leaf: Buffer): void {
    if (leaf.length !== HASH_SIZE)
      throw new RangeError(`a leaf hash is ${HASH_SIZE} bytes, not ${leaf.length}`);
    let node = leaf;
    // The trailing one bits of the old size are the perfect subtrees that the new leaf completes.
    for (let n = this.#leaves.length; (n & 1) === 1; n = Math.floor(n / 2)) {
      node = nodeHash(this.#stack.pop() as Buffer, node);
    }
    this.#stack.push(node);
    this.#leaves.push(leaf);
  }

  /** The leaf hash at `index`. */
  leaf(index: number): Buffer {
    const leaf = this.#leaves[index];
    if (leaf === undefined) throw new RangeError(`no leaf ${index} in a tree of ${this.size}`);
    return leaf;
  }

  /** The root hash of the first `size` leaves (default: all of them). */
  root(size: number = this.size): Buffer {
    checkSize(size, this.size);
    if (size === this.size) {
      let acc: Buffer | undefined;
      for (let i = this.#stack.length - 1; i >= 0; i--) {
        const node = this.#stack[i] as Buffer;
        acc = acc === undefined ? node : nodeHash(node, acc);
      }
      return acc ?? EMPTY_ROOT;
    }
    return subtreeRoot(this.#leaves, 0, size);
  }

  /** The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 6962 §2.1.1 PATH). */
  inclusionProof(index: number, size: number = this.size): Buffer[] {
    checkSize(size, this.size);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
      throw new RangeError(`leaf ${index} is not in a tree of ${size}`);
    }
    const proof: Buffer[] = [];
    path(this.#leaves, index, 0, size, proof);
    return proof;
  }

  /** The consistency proof from the tree of `from` leaves to the tree of `to` leaves (RFC 6962 §2.1.2). */
  consistencyProof(from: number, to: number = this.size): Buffer[] {
    checkSize(to, this.size);
    if (!Number.isSafeInteger(from) || from < 0 || from > to) {
      throw new RangeError(`no consistency proof from ${from} to ${to}`);
    }
    const proof: Buffer[] = [];
    if (from > 0 && from < to) subproof(this.#leaves, from, 0, to, true, proof);
    return proof;
  }
}

/**
 * The append-only tree as a writer needs it: its size, its current root and its last leaf, in O(log n) memory (the
 * roots of its perfect subtrees, RFC 6962's "compact range"). Proofs are built offline from the log file
 * (`strongroom audit prove`), so a long-running writer never holds every leaf.
 */
export class CompactMerkleTree {
  readonly #stack: Buffer[] = [];
  #size = 0;
  #last: Buffer | undefined;

  /** The compact form of the first `size` leaves of `tree` (default all). */
  static from(tree: MerkleTree): CompactMerkleTree {
    const compact = new CompactMerkleTree();
    for (let i = 0; i < tree.size; i++) compact.push(tree.leaf(i));
    return compact;
  }

  get size(): number {
    return this.#size;
  }

  /** The last leaf hash appended, if any. */
  get lastLeaf(): Buffer | undefined {
    return this.#last;
  }

  /** Appends a leaf by its leaf hash. */
  push(leaf: Buffer): void {
    if (leaf.length !== HASH_SIZE)
      throw new RangeError(`a leaf hash is ${HASH_SIZE} bytes, not ${leaf.length}`);
    let node = leaf;
    for (let n = this.#size; (n & 1) === 1; n = Math.floor(n / 2)) {
      node = nodeHash(this.#stack.pop() as Buffer, node);
    }
    this.#stack.push(node);
    this.#size += 1;
    this.#last = leaf;
  }

  /** The root hash of the whole tree. */
  root(): Buffer {
    let acc: Buffer | undefined;
    for (let i = this.#stack.length - 1; i >= 0; i--) {
      const node = this.#stack[i] as Buffer;
      acc = acc === undefined ? node : nodeHash(node, acc);
    }
    return acc ?? EMPTY_ROOT;
  }
}

function checkSize(size: number, have: number): void {
  if (!Number.isSafeInteger(size) || size < 0 || size > have) {
    throw new RangeError(`tree size ${size} is outside 0..${have}`);
  }
}

/** The largest power of two strictly below n (n >= 2). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH of leaves[start, start + n), recursively as RFC 6962 defines it. */
function subtreeRoot(leaves: readonly Buffer[], start: number, n: number): Buffer {
  if (n === 0) return EMPTY_ROOT;
  if (n === 1) return leaves[start] as Buffer;
  const k = split(n);
  return nodeHash(subtreeRoot(leaves, start, k), subtreeRoot(leaves, start + k, n - k));
}

function path(leaves: readonly Buffer[], m: number, start: number, n: number, out: Buffer[]): void {
  if (n <= 1) return;
  const k = split(n);
  if (m < k) {
    path(leaves, m, start, k, out);
    out.push(subtreeRoot(leaves, start + k, n - k));
  } else {
    path(leaves, m - k, start + k, n - k, out);
    out.push(subtreeRoot(leaves, start, k));
  }
}

function subproof(
  leaves: readonly Buffer[],
  m: number,
  start: number,
  n: number,
  whole: boolean,
  out: Buffer[],
): void {
  if (m === n) {
    if (!whole) out.push(subtreeRoot(leaves, start, n));
    return;
  }
  const k = split(n);
  if (m <= k) {
    subproof(leaves, m, start, k, whole, out);
    out.push(subtreeRoot(leaves, start + k, n - k));
  } else {
    subproof(leaves, m - k, start + k, n - k, false, out);
    out.push(subtreeRoot(leaves, start, k));
  }
}

/** The root of a list of leaf hashes, for callers that hold no MerkleTree. */
export function rootOf(leaves: readonly Buffer[]): Buffer {
  return subtreeRoot(leaves, 0, leaves.length);
}

/** True when `proof` shows the leaf `leaf` at `index` is in the tree of `size` leaves whose root is `root`. */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r: Uint8Array = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && Buffer.from(r).equals(root);
}

/** True when `proof` shows the tree (`from`, `fromRoot`) is a prefix of the tree (`to`, `toRoot`). */
export function verifyConsistency(
  from: number,
  to: number,
  proof: readonly Uint8Array[],
  fromRoot: Uint8Array,
  toRoot: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || from > to) return false;
  if (from === to) return proof.length === 0 && Buffer.from(fromRoot).equals(toRoot);
  // Every tree extends the empty tree; there is nothing to prove.
  if (from === 0) return proof.length === 0 && Buffer.from(fromRoot).equals(EMPTY_ROOT);
  if (proof.length === 0) return false;
  const path: Uint8Array[] = [...proof];
  if ((from & (from - 1)) === 0) path.unshift(fromRoot);
  let fn = from - 1;
  let sn = to - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0] as Uint8Array;
  let sr = fr;
  for (let i = 1; i < path.length; i++) {
    const c = path[i] as Uint8Array;
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && Buffer.from(fr).equals(fromRoot) && Buffer.from(sr).equals(toRoot);
}
