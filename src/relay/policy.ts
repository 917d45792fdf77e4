/**
 * The inbox policy decision (docs/protocol.md §3.9), pure, in one place: the directory asks it from its
 * caches to refuse early, and every store asks it again inside the transaction that inserts the
 * message (`Store.commit`), so the stored ACL has the last word.
 */
import type { AclEntryType } from '../protocol/types.js';
import type { AgentRecord, InboxRefusal } from './store/store.js';

export type { InboxRefusal } from './store/store.js';

/**
 * Why `recipient` refuses a message from `sender`, or undefined when it may go through. A
 * recipient without an agent record is treated as `open`; sending to yourself is always allowed
 * (our choice). `acl` is asked only when the policy depends on it.
 */
export function inboxRefusal(
  recipient: Pick<AgentRecord, 'public_key' | 'status' | 'inbox_policy'> | undefined,
  sender: string,
  acl: (peer: string) => AclEntryType | undefined,
): InboxRefusal | undefined {
  if (!recipient) return undefined;
  if (recipient.status === 'suspended') return 'forbidden';
  if (recipient.public_key === sender) return undefined;
  switch (recipient.inbox_policy) {
    case 'open':
      return undefined;
    case 'closed':
      return 'acl_denied';
    case 'allowlist':
      return acl(sender) === 'allow' ? undefined : 'acl_denied';
    case 'blocklist':
      return acl(sender) === 'block' ? 'acl_denied' : undefined;
  }
}
