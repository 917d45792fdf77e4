/**
 * The one table of error codes: code → kind → exit code → hint, with what each means. The code
 * is the contract (stable, snake_case); `src/cli/exit.ts` and `src/cli/hints.ts` read from here,
 * and the README's "Error codes" section is printed from it (`node scripts/error-codes.mjs`);
 * `test/core/codes.test.ts` checks that every code used in `src/` is listed and that the README
 * agrees.
 *
 * A code's `kind` is the kind of the error that normally carries it. A few codes are also carried
 * by errors of another kind (a relay code such as `bad_request` raised by local validation is a
 * `usage` error); those exit by their own kind (see `exitCodeFor`).
 */
import type { ErrorKind } from './errors.js';

/** Process exit codes of the CLI (README "Exit codes"). */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  network: 3,
  auth: 4,
  /** `mrp run`: a handler called process.exit (the message counts as a crash; restart the runner). */
  handlerExit: 70,
  interrupted: 130,
} as const;

/** The exit code of each kind, for errors whose code is not in the table or carries another kind. */
export const EXIT_BY_KIND: Readonly<Record<ErrorKind, number>> = {
  usage: EXIT.usage,
  config: EXIT.usage,
  auth: EXIT.auth,
  api: EXIT.failure,
  network: EXIT.network,
  timeout: EXIT.network,
  protocol: EXIT.failure,
  handler: EXIT.failure,
  aborted: EXIT.interrupted,
  internal: EXIT.failure,
};

/** Who produces a code: the relay's answers, local errors (CLI, client, runtime), or a handler's error reply. */
export type CodeSource = 'relay' | 'local' | 'reply';

export interface ErrorCodeInfo {
  readonly kind: ErrorKind;
  readonly exit: number;
  readonly source: CodeSource;
  /** What a person can do about it, when the error carries no hint of its own (relay codes). */
  readonly hint?: string;
  /** What it means (one line of the README). */
  readonly doc: string;
}

const usage = { kind: 'usage', exit: EXIT.usage, source: 'local' } as const;
const config = { kind: 'config', exit: EXIT.usage, source: 'local' } as const;
const network = { kind: 'network', exit: EXIT.network, source: 'local' } as const;
const timeout = { kind: 'timeout', exit: EXIT.network, source: 'local' } as const;
const protocol = { kind: 'protocol', exit: EXIT.failure, source: 'local' } as const;
const reply = { kind: 'handler', exit: EXIT.failure, source: 'reply' } as const;
const api = { kind: 'api', exit: EXIT.failure, source: 'relay' } as const;
const auth = { kind: 'auth', exit: EXIT.auth, source: 'relay' } as const;

export const ERROR_CODES = {
  // A bad command, flag, argument, setting or library option.
  usage: { ...usage, doc: 'a bad command, flag, argument or option' },
  unknown_command: { ...usage, doc: 'no such command' },
  unknown_option: { ...usage, doc: 'no such flag' },
  invalid_argument: { ...usage, doc: 'a bad argument or flag value (the message names it)' },
  missing_argument: { ...usage, doc: 'a required argument or flag value is missing' },
  invalid_relay_url: { ...usage, doc: 'the relay URL is not an http(s) or ws(s) URL' },
  invalid_option: { ...usage, doc: 'a bad option passed to a library constructor (`createRelay`, …)' },
  missing_credentials: { ...usage, doc: 'S3 blob storage needs `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`' },
  upload_source_changed: {
    ...usage,
    doc: 'an encrypted upload was refused because its file changed after it was first read (still being written?): nothing of the changed bytes was sent under its key; upload it again once it no longer changes',
  },
  encryption_unavailable: {
    ...usage,
    doc: 'a handler asked `ctx.send(…, { encrypt: true })` of a runner without end-to-end encryption',
  },

  // Local files.
  key_not_found: { ...config, doc: 'the identity (key) file does not exist' },
  key_invalid: { ...config, doc: 'the identity file is not a valid key' },
  key_permissions: { ...config, doc: 'the identity file is readable by others' },
  key_exists: { ...config, doc: 'an identity file is already there (not overwritten)' },
  key_unreadable: { ...config, doc: 'the identity file cannot be read' },
  contacts_invalid: {
    ...config,
    doc: 'the contacts file is not usable (not JSON, nested too deep, not UTF-8, a directory; a UTF-8 BOM is fine)',
  },
  unknown_contact: { ...usage, doc: 'no contact has that name' },
  ambiguous_contact: { ...usage, doc: 'that name matches more than one contact' },
  contact_exists: { ...usage, doc: 'a contact with that name already exists' },
  config_invalid: {
    ...config,
    doc: '`$MRP_HOME/config.json` is not a JSON object of known string settings (unknown key, wrong type, bad URL, not JSON, a directory); the message names the file and field',
  },
  context_not_found: { ...config, doc: '`mrp context`, `--context` or `MRP_CONTEXT` names no context' },
  context_invalid: { ...config, doc: 'a context name or file is not valid' },
  context_exists: { ...config, doc: 'a context with that name already exists' },
  doctor_failed: {
    ...config,
    exit: EXIT.failure,
    doc: '`mrp doctor`: at least one check failed (`details.failed` names them; exit 1: the command itself was right)',
  },
  manifest_not_found: { ...config, doc: 'no `mrp.yaml` where one is needed' },
  manifest_invalid: {
    ...config,
    doc: '`mrp.yaml` problems: every error with file, line and field (`details.errors` with `--json`); also unknown keys, more than 100 YAML aliases, nesting deeper than 64',
  },
  handler_not_found: { ...config, doc: 'the handler module does not exist' },
  handler_unsupported: { ...config, doc: 'the handler module has a type that cannot be loaded' },
  handler_syntax: { ...config, doc: 'the handler module has a syntax error' },
  handler_import: { ...config, doc: 'the handler module imports something that cannot be loaded' },
  handler_load: {
    ...config,
    doc: 'the handler module threw while loading, or never finished loading (a top-level `await` that never settles)',
  },
  handler_invalid: { ...config, doc: 'the handler module does not export a handler function' },
  journal_locked: {
    ...config,
    exit: EXIT.failure,
    doc: 'another `mrp run` uses the same identity on this machine (exit 1: nothing is wrong with the command)',
  },
  journal_other_relay: {
    ...config,
    doc: "the identity's local journal holds unfinished messages from another relay: finish them there (`--relay` that relay) or move the journal aside",
  },
  journal_unwritable: {
    kind: 'internal',
    exit: EXIT.failure,
    source: 'local',
    doc: '`mrp run` cannot write its journal (disk full, I/O error); retried while running, fatal at stop',
  },
  journal_unreachable: {
    ...network,
    doc: "`mrp run --journal postgres://…` / `mrp fleet`: the shared journal's database cannot be reached or used (the message names host and database, never the password)",
  },
  data_dir_locked: {
    ...config,
    doc: "`mrp relay`: another relay is using this data directory (the message names it and the holder's pid)",
  },
  storage_unusable: {
    ...config,
    doc: '`mrp relay`: the data directory or `mrp.db` cannot be used (corrupt, not a file, not a directory, no permission)',
  },
  database_unreachable: {
    ...config,
    doc: '`mrp relay --database-url`: the URL does not parse, PostgreSQL cannot be reached, the database does not exist, the user may not create its tables, or its schema is newer than this mrp (the message names the URL without its password)',
  },
  database_auth_failed: {
    ...config,
    doc: '`mrp relay --database-url`: PostgreSQL refused the user or password (the message names the URL without its password)',
  },
  address_in_use: {
    ...usage,
    doc: '`mrp relay` (`--port`, `--metrics-port`), `mrp run` (`--health-port`, `--listen`) or `mrp dev --port`: the port is taken',
  },
  public_url_required: {
    ...usage,
    doc: '`mrp run --mode webhook`: `--listen` is not a loopback address, so the URL the relay posts to cannot be inferred; give `--public-url`',
  },
  webhook_unsupported: {
    kind: 'api',
    exit: EXIT.failure,
    source: 'local',
    doc: '`mrp run --mode webhook`: the relay answers 404 to `PUT …/webhook` (it has no webhooks); a warning, the runner keeps listening',
  },
  webhook_reenabled: {
    kind: 'api',
    exit: EXIT.failure,
    source: 'local',
    doc: '`mrp run --mode webhook`: the relay had disabled the webhook (20 failed deliveries in a row); a warning, the runner registered it again and catches up on what waited',
  },
  dev_running: { kind: 'api', exit: EXIT.failure, source: 'local', doc: 'another `mrp dev` uses the same `MRP_HOME`' },
  agent_busy: {
    ...usage,
    doc: 'the library `Agent` is already running or iterating `messages()` (one at a time; `stop()` first)',
  },
  handler_exit: {
    kind: 'handler',
    exit: EXIT.handlerExit,
    source: 'local',
    doc: '`mrp run`/`mrp dev`: a handler called `process.exit`, on a message or while its module loaded (exit code 70)',
  },
  aborted: {
    kind: 'aborted',
    exit: EXIT.interrupted,
    source: 'local',
    doc: 'cancelled: Ctrl-C, shutdown or an AbortSignal',
  },
  internal_error: {
    kind: 'api',
    exit: EXIT.failure,
    source: 'relay',
    hint: 'the relay failed; try again later',
    doc: 'the relay failed (500); locally: a bug',
  },

  // Reaching the relay.
  network_error: { ...network, doc: 'the relay could not be reached, or the connection broke' },
  connection_refused: { ...network, doc: 'nothing listens at the relay URL' },
  not_connected: { ...network, doc: 'the WebSocket session is not connected' },
  session_closed: { ...network, doc: 'the WebSocket session was closed' },
  outcome_unknown: {
    ...network,
    doc: 'the connection dropped after a request was written and before its answer: the relay may or may not have acted on it',
  },
  timeout: {
    ...timeout,
    doc: 'an operation took longer than allowed; as a handler reply: the handler ran out of time',
  },
  reply_timeout: { ...timeout, doc: '`send --wait`: no reply in time' },

  // A peer broke the protocol.
  invalid_response: {
    ...protocol,
    doc: 'the relay answered with something unreadable (not JSON, no `messages` list, a repeated cursor)',
  },
  response_too_large: {
    ...protocol,
    doc: 'the relay answered with more bytes than the request allows (a poll page: its `limit` × the largest message a page may hold, at most 256 MiB); the answer was dropped unread',
  },
  blob_hash_mismatch: {
    ...protocol,
    doc: 'a downloaded blob does not match its `X-M2M-Blob-Hash` (or its length): damaged in transit or storage; nothing was kept',
  },
  invalid_frame: { ...protocol, doc: 'a peer broke the WebSocket protocol (`details.reason` says how)' },
  thread_too_long: {
    ...protocol,
    doc: 'a thread too long to check for an already-sent reply (over 10 million messages)',
  },
  invalid_key: { ...protocol, doc: 'end-to-end encryption: a key is not usable' },
  invalid_envelope: { ...protocol, doc: 'end-to-end encryption: an encrypted body is malformed' },
  unsupported_encryption_version: { ...protocol, doc: 'end-to-end encryption: an unknown encryption version' },
  decryption_failed: {
    ...protocol,
    doc: 'end-to-end encryption: cannot decrypt (wrong keys, a different sender, or tampered data)',
  },
  invalid_plaintext: { ...protocol, doc: 'end-to-end encryption: the decrypted body is not valid' },
  invalid_body: { ...protocol, doc: 'end-to-end encryption: a body that cannot be sealed or opened' },

  // Error replies a runner sends for a message (`mrp run`), besides the code a handler's error carries.
  handler_error: { ...reply, doc: 'reply: the handler threw an error without a code of its own' },
  invalid_reply: { ...reply, doc: 'reply: the handler returned something that is not JSON or not a valid reply' },
  reply_too_large: { ...reply, doc: "reply: the handler's reply is over the size limit" },
  reply_failed: { ...reply, doc: 'reply: the reply could not be prepared (e.g. sealed)' },
  handler_crashed: {
    ...reply,
    doc: 'reply: the handler ended the process `--max-crashes` times on this message',
  },
  invalid_message: {
    ...reply,
    doc: 'reply: the message could not be handed to the handler (too deep or malformed)',
  },

  // Answered by the relay (docs/protocol.md §6).
  bad_request: { ...api, doc: 'relay (400): a malformed request; `details.field` names the field' },
  unauthorized: {
    ...auth,
    hint: 'the request was not signed as the relay expects',
    doc: 'relay (401): missing or malformed signature headers',
  },
  invalid_signature: {
    ...auth,
    hint: 'the relay could not verify the signature; is --key the right key file?',
    doc: 'relay (401): the signature does not verify',
  },
  timestamp_expired: {
    ...auth,
    hint: "this machine's clock is more than 5 minutes off the relay's; sync it (NTP)",
    doc: "relay (401): the request's timestamp is too far from the relay's clock",
  },
  forbidden: { ...api, hint: 'you can only change your own agent', doc: 'relay (403): not allowed for this agent' },
  agent_suspended: {
    ...auth,
    hint: 'this agent is suspended on the relay',
    doc: 'relay (403): this agent is suspended',
  },
  acl_denied: {
    ...api,
    hint: "the recipient's inbox policy does not accept you; ask them to run `mrp acl allow <your key>` (your key: `mrp whoami`)",
    doc: "relay (403): the recipient's inbox policy refuses the sender",
  },
  not_found: { ...api, doc: 'relay (404): no such route or resource' },
  agent_not_found: {
    ...api,
    hint: 'no agent has used that key on this relay yet (or it was deleted)',
    doc: 'relay (404): no such agent',
  },
  message_not_found: {
    ...api,
    hint: 'unknown message id, or a message you neither sent nor received',
    doc: 'relay (404): no such message (for you)',
  },
  blob_not_found: {
    ...api,
    hint: 'unknown blob id, an expired blob, or one attached to no message of yours',
    doc: 'relay (404): no such blob (for you)',
  },
  request_timeout: { ...api, doc: 'relay (408): a request body did not arrive within 10 s' },
  replay_detected: {
    ...api,
    hint: 'the same signed request was sent twice; run the command again',
    doc: 'relay (409): the same signed request was seen before (retryable with a fresh signature)',
  },
  blob_referenced: {
    ...api,
    hint: 'it can be deleted once that message expires',
    doc: 'relay (409): the blob is still referenced by an unexpired message',
  },
  conflict: { ...api, doc: 'relay (409) without an error envelope (e.g. from a proxy)' },
  payload_too_large: {
    ...api,
    hint: 'the limit is 1 MiB per body, 2 MiB per message and 100 MiB per blob',
    doc: 'relay (413): a body, message or blob over the size limit',
  },
  unprocessable_entity: {
    ...api,
    doc: 'relay (422): a well-formed request with a bad value; `details.field` names it',
  },
  webhook_url_refused: {
    ...api,
    hint: 'webhooks must reach a public address; for local development run the relay with --allow-private-webhooks (mrp dev does)',
    doc: 'relay (422): the webhook URL points at a loopback, private, link-local or reserved address',
  },
  rate_limit_exceeded: {
    ...api,
    hint: 'retry in a minute',
    doc: 'relay (429): too many requests (`Retry-After` says when to retry)',
  },
  too_many_connections: { ...api, doc: 'relay (429): too many WebSocket connections for this agent' },
  service_unavailable: {
    ...api,
    hint: 'the relay is shutting down; try again shortly',
    doc: 'relay (503): shutting down or storage unavailable; retry later',
  },
  insufficient_storage: {
    ...api,
    hint: 'at most 100 blobs and 1 GiB per agent: delete blobs you no longer need (`mrp blob delete`)',
    doc: 'relay (507): the blob quota of this agent (count or bytes) is used up',
  },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The table entry of a code, or undefined for codes this project does not define (a newer relay's). */
export function errorCodeInfo(code: string): ErrorCodeInfo | undefined {
  return Object.hasOwn(ERROR_CODES, code) ? (ERROR_CODES as Record<string, ErrorCodeInfo>)[code] : undefined;
}

/**
 * The exit code for an error of this kind and code: the code's own when the error has the code's
 * kind, else its kind's.
 */
export function exitCodeOf(kind: ErrorKind, code: string): number {
  const info = errorCodeInfo(code);
  return info !== undefined && info.kind === kind ? info.exit : EXIT_BY_KIND[kind];
}
