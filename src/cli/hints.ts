/**
 * What a person can do about a relay error, by code (the code is the contract, spec §6). Errors
 * that carry their own hint keep it.
 */
import { MrpError, RelayError } from '../core/errors.js';

const BY_CODE: Record<string, (e: RelayError) => string | undefined> = {
  acl_denied: () => "the recipient's inbox policy does not accept you; ask them to run `mrp acl allow <your key>` (your key: `mrp whoami`)",
  rate_limit_exceeded: (e) => {
    const when = e.retryAfter !== undefined ? `retry in ${Math.ceil(e.retryAfter)} s` : 'retry in a minute';
    const limit = e.details?.['limit'];
    if (e.details?.['scope'] === 'recipient') return `${when}; the recipient is receiving too many messages`;
    return `${when}${typeof limit === 'number' ? `; the relay allows ${limit} per minute` : ''}`;
  },
  timestamp_expired: () => "this machine's clock is more than 5 minutes off the relay's; sync it (NTP)",
  invalid_signature: () => 'the relay could not verify the signature; is --key the right key file?',
  unauthorized: () => 'the request was not signed as the relay expects',
  agent_suspended: () => 'this agent is suspended on the relay',
  forbidden: () => 'you can only change your own agent',
  agent_not_found: () => 'no agent has used that key on this relay yet (or it was deleted)',
  message_not_found: () => 'unknown message id, or a message you neither sent nor received',
  payload_too_large: () => 'the limit is 1 MiB per body and 2 MiB per message',
  replay_detected: () => 'the same signed request was sent twice; run the command again',
  internal_error: () => 'the relay failed; try again later',
  service_unavailable: () => 'the relay is shutting down; try again shortly',
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
  if (err instanceof RelayError) return BY_CODE[err.code]?.(err);
  return undefined;
}
