/**
 * A child process for test/relay/sqlite-checkpoint.test.ts: opens the SQLite store in argv[2]
 * with background checkpoints from the first commit, then commits one message per event-loop
 * turn (as the relay's batcher does) and prints each id once its commit has returned — the
 * moment the relay would answer the sender. It runs until it is killed.
 */
import { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import { agent, message, newKey } from './store.contract.js';

const store = new SqliteStore(process.argv[2]!, { checkpoint: { after: 1, resetPages: 256 } });
const sender = newKey();
const recipient = newKey();
await store.ensureAgent(agent(sender));
await store.ensureAgent(agent(recipient));
store.checkpoints.onCheckpoint = (r) => {
  if (r.checkpointed > 0) process.stdout.write('checkpointed\n');
};
process.stdout.write(`recipient ${recipient}\n`);
for (;;) {
  const m = message(sender, recipient, { body_json: `{"pad":"${'x'.repeat(2000)}"}` });
  await store.commit({ messages: [m], delivered: [], active: new Map() }, m.created_at);
  process.stdout.write(`${m.message_id}\n`);
  await new Promise(setImmediate);
}
