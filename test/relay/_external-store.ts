/**
 * A store "written outside the project", for `MRP_TEST_STORE=test/relay/_external-store.ts`
 * (test/helpers/relay.ts): a plain object that implements `Store` by delegating to a SQLite
 * store it opened itself. Running the relay conformance suite through it shows the relay uses
 * nothing of its store but the interface — the same run works for any module exporting
 * `openStore(dataDir)`.
 */
import type { RelayOptions } from '../../src/relay/options.js';
import { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import type { Store } from '../../src/relay/store/store.js';

/** `options` are the relay's: this store honours the two that describe a SQLite file. */
export async function openStore(dataDir: string, options: Partial<RelayOptions> = {}): Promise<Store> {
  const inner = new SqliteStore(dataDir, {
    ...(options.minFreeDiskBytes === undefined ? {} : { minFreeBytes: options.minFreeDiskBytes }),
    ...(options.synchronous === undefined ? {} : { synchronous: options.synchronous }),
  });
  const store: Store = {
    location: `external:${inner.location}`,
    getAgent: (...a) => inner.getAgent(...a),
    ensureAgent: (...a) => inner.ensureAgent(...a),
    saveAgent: (...a) => inner.saveAgent(...a),
    deleteAgent: (...a) => inner.deleteAgent(...a),
    discover: (...a) => inner.discover(...a),
    capabilityTags: (...a) => inner.capabilityTags(...a),
    commit: (...a) => inner.commit(...a),
    getMessage: (...a) => inner.getMessage(...a),
    getMessages: (...a) => inner.getMessages(...a),
    takeSent: (...a) => inner.takeSent(...a),
    listInbox: (...a) => inner.listInbox(...a),
    pending: (...a) => inner.pending(...a),
    thread: (...a) => inner.thread(...a),
    sweep: (...a) => inner.sweep(...a),
    insertBlob: (...a) => inner.insertBlob(...a),
    getBlob: (...a) => inner.getBlob(...a),
    readableBlob: (...a) => inner.readableBlob(...a),
    blobUsage: (...a) => inner.blobUsage(...a),
    deleteBlob: (...a) => inner.deleteBlob(...a),
    sweepBlobs: (...a) => inner.sweepBlobs(...a),
    putAcl: (...a) => inner.putAcl(...a),
    getAcl: (...a) => inner.getAcl(...a),
    listAcl: (...a) => inner.listAcl(...a),
    deleteAcl: (...a) => inner.deleteAcl(...a),
    putWebhook: (...a) => inner.putWebhook(...a),
    getWebhook: (...a) => inner.getWebhook(...a),
    deleteWebhook: (...a) => inner.deleteWebhook(...a),
    claimDeliveries: (...a) => inner.claimDeliveries(...a),
    nextDeliveryAt: () => inner.nextDeliveryAt(),
    completeDelivery: (...a) => inner.completeDelivery(...a),
    failDelivery: (...a) => inner.failDelivery(...a),
    ping: () => inner.ping(),
    health: (...a) => inner.health(...a),
    close: () => inner.close(),
  };
  return store;
}
