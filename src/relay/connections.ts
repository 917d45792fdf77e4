/**
 * Per-agent WebSocket connection counting (§7: at most 2 per agent) behind an interface, because
 * it is process-local state: with several relay processes the cap must hold across all of them
 * (the third connection gets 4002 wherever it lands), so a shared registry (rows with a lease in
 * Postgres, a Redis set with expiry) replaces `MemoryConnectionRegistry`.
 *
 * The sockets themselves stay in the hub of the process that holds them: this registry only
 * counts, and `tryAcquire` is the one atomic "count and take a slot" step.
 */

export interface ConnectionRegistry {
  /**
   * Takes one of `max` slots of `agent` for `connectionId`. Resolves `false` when all are taken.
   * Atomic: of concurrent calls for one agent, at most `max` succeed in total.
   */
  tryAcquire(agent: string, connectionId: string, max: number): Promise<boolean>;
  /** Gives the slot back (idempotent; unknown ids are ignored). */
  release(agent: string, connectionId: string): Promise<void>;
}

export class MemoryConnectionRegistry implements ConnectionRegistry {
  readonly #byAgent = new Map<string, Set<string>>();

  async tryAcquire(agent: string, connectionId: string, max: number): Promise<boolean> {
    let set = this.#byAgent.get(agent);
    if (set?.has(connectionId)) return true;
    if ((set?.size ?? 0) >= max) return false;
    if (!set) {
      set = new Set();
      this.#byAgent.set(agent, set);
    }
    set.add(connectionId);
    return true;
  }

  async release(agent: string, connectionId: string): Promise<void> {
    const set = this.#byAgent.get(agent);
    if (!set?.delete(connectionId)) return;
    if (set.size === 0) this.#byAgent.delete(agent);
  }

  /** Slots held by `agent` (tests and diagnostics). */
  count(agent: string): number {
    return this.#byAgent.get(agent)?.size ?? 0;
  }
}
