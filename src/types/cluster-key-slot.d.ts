/** cluster-key-slot 1.1.1 (the version ioredis pins) ships no types; the one function we call. */
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot (0-16383) of a key, honouring a `{hash tag}`. */
  export default function calculateSlot(key: string): number;
}
