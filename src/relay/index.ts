/**
 * `mrp/relay`: a self-hostable MRP relay. `createRelay({ dataDir })` → `{ listen, close, url }`.
 */
export { createRelay, type Relay, RELAY_DEFAULTS, type RelayOptions } from './server.js';
export type { LogEntry, LogLevel, LogSink } from './log.js';
export { isLogLevel } from './log.js';
export type { Store } from './store.js';
export { type MetricsFactory, Registry } from '../core/metrics.js';
