import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  errorEnvelope,
  parseRetryAfter,
  relayErrorFromFrame,
  relayErrorFromResponse,
} from '../../src/protocol/envelope.js';

const headers = (h: Record<string, string>) => ({ get: (n: string) => h[n.toLowerCase()] ?? null });

describe('error envelope (§6)', () => {
  it('builds the documented shape', () => {
    assert.deepEqual(
      errorEnvelope('rate_limit_exceeded', 'slow down', 'req_1', { limit: 30, window: '1m', retry_after: 12 }),
      {
        error: {
          code: 'rate_limit_exceeded',
          message: 'slow down',
          details: { limit: 30, window: '1m', retry_after: 12 },
          request_id: 'req_1',
        },
      },
    );
    assert.deepEqual(errorEnvelope('not_found', 'x', 'req_2'), {
      error: { code: 'not_found', message: 'x', request_id: 'req_2' },
    });
  });

  it('parses an envelope into a RelayError, preferring Retry-After', () => {
    const body = JSON.stringify(errorEnvelope('rate_limit_exceeded', 'slow', 'req_3', { retry_after: 12 }));
    const e = relayErrorFromResponse(429, body, headers({ 'retry-after': '7' }), 0);
    assert.equal(e.code, 'rate_limit_exceeded');
    assert.equal(e.status, 429);
    assert.equal(e.retryAfter, 7);
    assert.equal(e.requestId, 'req_3');
    assert.equal(relayErrorFromResponse(429, body, headers({}), 0).retryAfter, 12);
  });

  it('survives bodies that are not envelopes', () => {
    const e = relayErrorFromResponse(502, '<html>Bad Gateway</html>', headers({ 'x-request-id': 'req_x' }), 0);
    assert.equal(e.code, 'internal_error');
    assert.match(e.message, /HTTP 502.*Bad Gateway/);
    assert.equal(e.requestId, 'req_x');
    assert.equal(relayErrorFromResponse(401, '', headers({}), 0).kind, 'auth');
  });

  it('Retry-After as seconds or HTTP date', () => {
    assert.equal(parseRetryAfter('3', 0), 3);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 0), 10);
    assert.equal(parseRetryAfter('soon', 0), undefined);
    assert.equal(parseRetryAfter(null, 0), undefined);
  });

  it('frame errors become RelayErrors with the HTTP-equivalent status', () => {
    const e = relayErrorFromFrame({ code: 'rate_limit_exceeded', message: 'x', details: { retry_after: 4 } }, 'c-1');
    assert.equal(e.status, 429);
    assert.equal(e.retryAfter, 4);
    assert.equal(e.requestId, 'c-1');
    assert.equal(relayErrorFromFrame({ code: 'timestamp_expired', message: 'skew' }).kind, 'auth');
  });
});
