/**
 * Relay only: WebSocket inline send → push → ack, small JSON, limits off. A sender and a
 * receiver (this process, one connection each) around `mrp relay`; at most `window` sends
 * waiting for their send_result.
 */
import { Keypair } from '../src/protocol/signing.js';
import { connect } from './requester.js';

export interface RelayThroughput {
  count: number;
  window: number;
  seconds: number;
  perSecond: number;
  lost: number;
  duplicates: number;
  /** send_result errors. */
  errors: number;
  timedOut: boolean;
}

export async function relayThroughput(
  wsUrl: string,
  count: number,
  window: number,
  timeoutMs: number,
): Promise<RelayThroughput> {
  const seen = new Set<number>();
  let duplicates = 0;
  let errors = 0;
  let allIn!: () => void;
  const received = new Promise<void>((resolve) => (allIn = resolve));
  const check = (): void => void (seen.size + errors >= count && allIn());
  const recipient = Keypair.generate();
  const receiver = await connect(wsUrl, recipient, (frame) => {
    if (frame.type !== 'message') return;
    const message = frame['message'] as { message_id: string; body: { n: number } };
    receiver.send(`{"type":"ack","message_id":"${message.message_id}"}`);
    if (seen.has(message.body.n)) duplicates++;
    seen.add(message.body.n);
    check();
  });
  let sent = 0;
  let results = 0;
  const sender = await connect(wsUrl, Keypair.generate(), (frame) => {
    if (frame.type !== 'send_result') return;
    results++;
    if (frame['status'] !== 'ok' && ++errors <= 3) console.error(`send failed: ${JSON.stringify(frame)}`);
    check();
    pump();
  });
  const pump = (): void => {
    while (sent < count && sent - results < window) {
      sender.send(
        `{"type":"send","request_id":"${sent}","recipient_key":"${recipient.publicKey}","body":{"n":${sent}}}`,
      );
      sent++;
    }
  };
  const started = performance.now();
  pump();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    received.then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
  ]);
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  sender.close();
  receiver.close();
  return {
    count,
    window,
    seconds,
    perSecond: seen.size / seconds,
    lost: count - seen.size,
    duplicates,
    errors,
    timedOut,
  };
}
