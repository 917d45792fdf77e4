/**
 * What the PostgreSQL store keeps (docs/protocol.md §10, external mode): the numbered migrations,
 * one list per concern, applied in one order. Never edit a released entry; append to the list of
 * its concern and give it the next number. A new concern (blob metadata, webhooks) adds its own
 * list and is appended to `MIGRATIONS`.
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

export interface Migration {
  /** Position in `MIGRATIONS` + 1; stored in `mrp_migrations`. */
  version: number;
  name: string;
  sql: string;
}

/** Agents, tags, messages, ACL, the health probe: the `Store` (pg-store.ts). */
const STORE_MIGRATIONS = [
  {
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
const SHARED_STATE_MIGRATIONS = [
  {
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

/** Every migration, numbered in this order. Append only. */
export const MIGRATIONS: readonly Migration[] = [...STORE_MIGRATIONS, ...SHARED_STATE_MIGRATIONS].map((m, i) => ({
  version: i + 1,
  ...m,
}));

/** Advisory lock keys (namespace, id) of this project: one namespace, one id per purpose. */
export const LOCKS = {
  namespace: 0x6d7270, // "mrp"
  migrate: 1,
  sweep: 2,
  /** `(namespace2, hashtext(agent))`: one agent's connection slots. */
  slots: 0x6d7271,
} as const;

/**
 * Brings the schema up to date: under a transaction-scoped advisory lock, the migrations table
 * is created if absent and every pending migration applied, all in one transaction. A database
 * newer than this code is refused.
 */
export async function migrate(sql: postgres.Sql, location: string): Promise<number> {
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
      throw new Error(`${location} has schema version ${current}, newer than this relay understands (${MIGRATIONS.length}); upgrade mrp`);
    }
    for (const m of MIGRATIONS.slice(current)) {
      await tx.unsafe(m.sql);
      await tx`INSERT INTO mrp_migrations (version, name) VALUES (${m.version}, ${m.name})`;
    }
    return MIGRATIONS.length;
  }) as Promise<number>;
}
