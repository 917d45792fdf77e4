/**
 * What a person can do about a relay error, by code (the code is the contract, docs/protocol.md §6). The
 * hints are in the one error-code table (`src/core/codes.ts`); the few that depend on the answer's
 * details are computed here. Errors that carry their own hint keep it.
 */
import { errorCodeInfo } from '../core/codes.js';
import { MrpError, RelayError } from '../core/errors.js';

/** Hints that depend on the error's details (retry delay, scope, field); undefined → the table's. */
const DYNAMIC: Record<string, (e: RelayError) => string | undefined> = {
  rate_limit_exceeded: (e) => {
    const when = e.retryAfter !== undefined ? `retry in ${Math.ceil(e.retryAfter)} s` : 'retry in a minute';
    const limit = e.details?.['limit'];
    if (e.details?.['scope'] === 'recipient') return `${when}; the recipient is receiving too many messages`;
    return `${when}${typeof limit === 'number' ? `; the relay allows ${limit} per minute` : ''}`;
  },
  bad_request: (e) => fieldHint(e),
  unprocessable_entity: (e) => fieldHint(e),
};

function fieldHint(e: RelayError): string | undefined {
  const field = e.details?.['field'];
  return typeof field === 'string' && field !== '' ? `check ${field}` : undefined;
}

export function hintFor(err: unknown): string | undefined {
  if (!(err instanceof MrpError)) return undefined;
  if (err.hint) return err.hint;
  if (!(err instanceof RelayError)) return undefined;
  const dynamic = Object.hasOwn(DYNAMIC, err.code) ? DYNAMIC[err.code] : undefined;
  if (dynamic) return dynamic(err);
  return errorCodeInfo(err.code)?.hint;
}
