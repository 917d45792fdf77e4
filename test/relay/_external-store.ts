/**
 * A store "written outside the project", for `MRP_TEST_STORE=test/relay/_external-store.ts`
 * (test/helpers/relay.ts): a plain object that implements `Store` by delegating to a SQLite
 * store it opened itself. Running the relay conformance suite through it shows the relay uses
 * nothing of its store but the interface — the same run works for any module exporting
 * `openStore(dataDir)`.
 */
// Only the package entry point (`mrp/relay`), as an author outside the project has: every type a
// store's signatures name is exported there (the typed methods below fail to compile otherwise).
import {
  type BlobQuota,
  type BlobRecord,
  type BlobUsage,
  type ClaimOptions,
  type DeliveryClaim,
  type DeliveryCompletion,
  type DeliveryFailure,
  type InsertBlobResult,
  type RelayOptions,
  SqliteStore,
  type Store,
  type WebhookRecord,
} from '../../src/relay/index.js';

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
    insertBlob: (record: BlobRecord, quota: BlobQuota, now: number): Promise<InsertBlobResult> =>
      inner.insertBlob(record, quota, now),
    getBlob: (id: string): Promise<BlobRecord | undefined> => inner.getBlob(id),
    readableBlob: (...a) => inner.readableBlob(...a),
    blobUsage: (owner: string, now: number): Promise<BlobUsage> => inner.blobUsage(owner, now),
    deleteBlob: (...a) => inner.deleteBlob(...a),
    sweepBlobs: (...a) => inner.sweepBlobs(...a),
    putAcl: (...a) => inner.putAcl(...a),
    getAcl: (...a) => inner.getAcl(...a),
    listAcl: (...a) => inner.listAcl(...a),
    deleteAcl: (...a) => inner.deleteAcl(...a),
    putWebhook: (agent: string, url: string, secret: string, now: number): Promise<WebhookRecord> =>
      inner.putWebhook(agent, url, secret, now),
    getWebhook: (...a) => inner.getWebhook(...a),
    deleteWebhook: (...a) => inner.deleteWebhook(...a),
    claimDeliveries: (now: number, o: ClaimOptions): Promise<DeliveryClaim[]> => inner.claimDeliveries(now, o),
    nextDeliveryAt: () => inner.nextDeliveryAt(),
    completeDelivery: (id: string, now: number): Promise<DeliveryCompletion | undefined> =>
      inner.completeDelivery(id, now),
    failDelivery: (
      id: string,
      now: number,
      next: number | null,
      disableAfter: number,
    ): Promise<DeliveryFailure | undefined> => inner.failDelivery(id, now, next, disableAfter),
    ping: () => inner.ping(),
    health: (...a) => inner.health(...a),
    close: () => inner.close(),
  };
  return store;
}
