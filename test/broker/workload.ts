// The workload helpers moved to test/harness/workload.ts; this re-export keeps operator/broker's tests importing
// the old path until they are updated (they are outside this change).
export * from '../harness/workload.ts';
