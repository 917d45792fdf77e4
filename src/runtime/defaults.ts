/**
 * The runtime's defaults, in a module of their own (no imports) so the CLI can show and apply
 * them (`mrp run --help`, option parsing) without loading the runtime: stated once, here.
 */
export const RUNTIME_DEFAULTS = {
  concurrency: 8,
  timeoutMs: 30_000,
  graceMs: 30_000,
  maxQueued: 1000,
  maxQueuedBytes: 32 * 1024 * 1024,
  maxCrashes: 3,
} as const;

/** A fleet's shared journal (`mrp run --journal postgres://…`): how long a dead runner holds its messages. */
export const FLEET_LEASE_MS = 30_000;
