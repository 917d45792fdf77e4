/**
 * What the PostgreSQL store keeps (docs/protocol.md §10, external mode): the numbered migrations,
 * one list per concern, each entry carrying its version. Never edit a released entry; append a new
 * entry to the list of its concern with the next free version (`MIGRATIONS` sorts them all and
 * refuses a gap or a duplicate, so appending to one concern never renumbers another).
 *
 * Conventions: times are `bigint` Unix milliseconds; keys, ids and tags are `TEXT COLLATE "C"`
 * (byte order, the same as SQLite's, whatever the database's locale); message bodies are `text`,
 * stored verbatim (never `jsonb`: `1e999`, duplicate keys and big integers must round-trip as
 * sent); JSON columns the relay wrote itself (metadata, attachments, capabilities) are `text` too.
 *
 * `migrate` runs every pending migration in one transaction under an advisory lock, so relay
 * processes starting at once neither race nor see half a schema.
 */
import type postgres from 'postgres';
import { ConfigError } from '../../core/errors.js';

export interface Migration {
  /** 1, 2, 3, … without gaps across every concern; stored in `mrp_migrations`. */
  version: number;
  name: string;
  sql: string;
}

/** Agents, tags, messages, ACL, the health probe: the `Store` (pg-store.ts). */
const STORE_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'store',
    sql: `
    CREATE TABLE agents (
      public_key     TEXT COLLATE "C" PRIMARY KEY,
      display_name   TEXT,
      status         TEXT NOT NULL,
      visibility     TEXT NOT NULL,
      inbox_policy   TEXT NOT NULL,
      created_at     BIGINT NOT NULL,
      last_active_at BIGINT NOT NULL,
      metadata       TEXT NOT NULL,
      capabilities   TEXT NOT NULL,
      search_text    TEXT NOT NULL
    );
    CREATE INDEX agents_activity ON agents (visibility, last_active_at DESC, public_key);

    CREATE TABLE agent_tags (
      agent_key TEXT COLLATE "C" NOT NULL,
      tag       TEXT COLLATE "C" NOT NULL,
      PRIMARY KEY (agent_key, tag)
    );
    CREATE INDEX agent_tags_by_tag ON agent_tags (tag, agent_key);

    CREATE TABLE messages (
      seq           BIGSERIAL PRIMARY KEY,
      message_id    TEXT COLLATE "C" NOT NULL UNIQUE,
      sender_key    TEXT COLLATE "C" NOT NULL,
      recipient_key TEXT COLLATE "C" NOT NULL,
      content_type  TEXT NOT NULL,
      body          TEXT NOT NULL,
      attachments   TEXT NOT NULL,
      thread_id     TEXT COLLATE "C",
      in_reply_to   TEXT COLLATE "C",
      metadata      TEXT NOT NULL,
      status        TEXT NOT NULL,
      created_at    BIGINT NOT NULL,
      expires_at    BIGINT NOT NULL,
      delivered_at  BIGINT
    );
    CREATE INDEX messages_inbox ON messages (recipient_key, status, created_at, message_id);
    CREATE INDEX messages_backlog ON messages (recipient_key, status, seq);
    CREATE INDEX messages_thread ON messages (thread_id) WHERE thread_id IS NOT NULL;
    CREATE INDEX messages_reply ON messages (in_reply_to) WHERE in_reply_to IS NOT NULL;
    CREATE INDEX messages_expiry ON messages (status, expires_at);

    CREATE TABLE acl (
      id         BIGSERIAL PRIMARY KEY,
      owner_key  TEXT COLLATE "C" NOT NULL,
      peer_key   TEXT COLLATE "C" NOT NULL,
      entry_type TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      UNIQUE (owner_key, peer_key)
    );

    CREATE TABLE health_probe (
      id INTEGER PRIMARY KEY,
      at BIGINT NOT NULL
    );
    `,
  },
];

/** Replay cache, connection slots with process leases, rate windows: the shared process state (pg-shared.ts). */
const SHARED_STATE_MIGRATIONS: Migration[] = [
  {
    version: 2,
    name: 'shared_state',
    sql: `
    CREATE TABLE replay_cache (
      id        TEXT COLLATE "C" PRIMARY KEY,
      forget_at BIGINT NOT NULL
    );
    CREATE INDEX replay_cache_expiry ON replay_cache (forget_at);

    CREATE TABLE relay_processes (
      process_id  TEXT COLLATE "C" PRIMARY KEY,
      started_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
      lease_until TIMESTAMPTZ NOT NULL
    );

    CREATE TABLE ws_slots (
      connection_id TEXT COLLATE "C" PRIMARY KEY,
      agent_key     TEXT COLLATE "C" NOT NULL,
      process_id    TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX ws_slots_agent ON ws_slots (agent_key);
    CREATE INDEX ws_slots_process ON ws_slots (process_id);

    CREATE TABLE rate_counts (
      scope  TEXT NOT NULL,
      key    TEXT COLLATE "C" NOT NULL,
      bucket BIGINT NOT NULL,
      count  INTEGER NOT NULL,
      PRIMARY KEY (scope, key, bucket)
    );
    CREATE INDEX rate_counts_bucket ON rate_counts (bucket);
    `,
  },
];

/** Webhook config per agent and the pending deliveries (docs/protocol.md §3.8), created in the message's commit. */
const WEBHOOK_MIGRATIONS: Migration[] = [
  {
    version: 3,
    name: 'webhooks',
    sql: `
    CREATE TABLE webhooks (
      agent_key            TEXT COLLATE "C" PRIMARY KEY,
      url                  TEXT NOT NULL,
      secret               TEXT NOT NULL,
      enabled              INTEGER NOT NULL,
      consecutive_failures INTEGER NOT NULL,
      created_at           BIGINT NOT NULL
    );

    CREATE TABLE webhook_deliveries (
      delivery_id     TEXT COLLATE "C" PRIMARY KEY,
      message_id      TEXT COLLATE "C" NOT NULL UNIQUE,
      agent_key       TEXT COLLATE "C" NOT NULL,
      attempts        INTEGER NOT NULL,
      next_attempt_at BIGINT NOT NULL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, delivery_id);
    CREATE INDEX webhook_deliveries_agent ON webhook_deliveries (agent_key);
    `,
  },
];

/** Poll take ids (docs/protocol.md §3.6): the take that marked a message delivered. */
const TAKE_MIGRATIONS: Migration[] = [
  {
    version: 4,
    name: 'take_ids',
    sql: `
    ALTER TABLE messages ADD COLUMN take_id TEXT COLLATE "C";
    CREATE INDEX messages_take ON messages (recipient_key, take_id) WHERE take_id IS NOT NULL;
    `,
  },
];

/** Blob metadata and the references of messages to blobs (docs/protocol.md §3.7); the bytes live in a `BlobStore`. */
const BLOB_MIGRATIONS: Migration[] = [
  {
    version: 5,
    name: 'blobs',
    sql: `
    CREATE TABLE blobs (
      blob_id      TEXT COLLATE "C" PRIMARY KEY,
      owner_key    TEXT COLLATE "C" NOT NULL,
      hash         TEXT NOT NULL,
      size         BIGINT NOT NULL,
      content_type TEXT NOT NULL,
      created_at   BIGINT NOT NULL,
      expires_at   BIGINT NOT NULL
    );
    CREATE INDEX blobs_owner ON blobs (owner_key, expires_at);
    CREATE INDEX blobs_expiry ON blobs (expires_at);

    CREATE TABLE blob_refs (
      blob_id       TEXT COLLATE "C" NOT NULL,
      message_id    TEXT COLLATE "C" NOT NULL,
      sender_key    TEXT COLLATE "C" NOT NULL,
      recipient_key TEXT COLLATE "C" NOT NULL,
      expires_at    BIGINT NOT NULL,
      PRIMARY KEY (blob_id, message_id)
    );
    CREATE INDEX blob_refs_expiry ON blob_refs (expires_at);
    CREATE INDEX blob_refs_recipient ON blob_refs (recipient_key);
    CREATE INDEX blob_refs_sender ON blob_refs (sender_key);
    `,
  },
];

/** Every migration, by version. A gap or a duplicate is a programming error caught at load (and by the tests). */
export const MIGRATIONS: readonly Migration[] = [
  ...STORE_MIGRATIONS,
  ...SHARED_STATE_MIGRATIONS,
  ...WEBHOOK_MIGRATIONS,
  ...TAKE_MIGRATIONS,
  ...BLOB_MIGRATIONS,
].sort((a, b) => a.version - b.version);
MIGRATIONS.forEach((m, i) => {
  if (m.version !== i + 1)
    throw new Error(`pg-schema: migration "${m.name}" has version ${m.version}, expected ${i + 1}`);
});

/** Advisory lock keys (namespace, id) of this project: one namespace, one id per purpose. */
export const LOCKS = {
  namespace: 0x6d7270, // "mrp"
  migrate: 1,
  sweep: 2,
  /** `(blobs, hashtext(owner))`: one agent's blob quota (check and insert). */
  blobs: 0x6d7272,
  /** `(namespace2, hashtext(agent))`: one agent's connection slots. */
  slots: 0x6d7271,
} as const;

/**
 * Brings the schema up to date: under a transaction-scoped advisory lock, the migrations table
 * is created if absent and every pending migration applied, all in one transaction. A database
 * newer than this code is refused.
 */
export async function migrate(sql: postgres.Sql, location: string): Promise<number> {
  // Up to date already: nothing to create, so a user who may only read and write the tables (the
  // owner migrated them) starts too. CREATE … IF NOT EXISTS needs the right to create even when
  // the table exists.
  const [found] = await sql<Array<{ t: string | null }>>`SELECT to_regclass('mrp_migrations')::text AS t`;
  if (found?.t) {
    const [row] = await sql<Array<{ v: number | null }>>`SELECT max(version) AS v FROM mrp_migrations`;
    if (Number(row?.v ?? 0) === MIGRATIONS.length) return MIGRATIONS.length;
  }
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${LOCKS.namespace}, ${LOCKS.migrate})`;
    await tx`CREATE TABLE IF NOT EXISTS mrp_migrations (
      version    INTEGER PRIMARY KEY,
      name       TEXT NOT NULL,
      applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`;
    const [row] = await tx<Array<{ v: number | null }>>`SELECT max(version) AS v FROM mrp_migrations`;
    const current = Number(row?.v ?? 0);
    if (current > MIGRATIONS.length) {
      throw new ConfigError(
        'database_unreachable',
        `${location} has schema version ${current}, newer than this relay understands (${MIGRATIONS.length})`,
        {
          hint: 'a newer mrp has migrated this database: upgrade mrp here to the version the other relay processes run',
        },
      );
    }
    for (const m of MIGRATIONS.slice(current)) {
      await tx.unsafe(m.sql);
      await tx`INSERT INTO mrp_migrations (version, name) VALUES (${m.version}, ${m.name})`;
    }
    return MIGRATIONS.length;
  }) as Promise<number>;
}
