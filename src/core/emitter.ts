/**
 * A small typed event emitter. The library reports what happens through events (habit 4: it
 * never prints); the CLI decides how they look.
 */
export type EventMap = Record<string, unknown[]>;
type Listener<A extends unknown[]> = (...args: A) => void;
type AnyListener = (...args: unknown[]) => void;

/**
 * What a consumer asks of something that reports through events: a contract (such as
 * `MessageSource`) names this rather than the class, so any emitter fits.
 */
export interface Listenable<E extends EventMap> {
  on<K extends keyof E>(event: K, listener: Listener<E[K]>): unknown;
  off<K extends keyof E>(event: K, listener: Listener<E[K]>): unknown;
  once<K extends keyof E>(event: K, listener: Listener<E[K]>): unknown;
}

export class TypedEmitter<E extends EventMap> implements Listenable<E> {
  #listeners = new Map<keyof E, Set<AnyListener>>();

  on<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as unknown as AnyListener);
    return this;
  }

  off<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    this.#listeners.get(event)?.delete(listener as unknown as AnyListener);
    return this;
  }

  once<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    const wrapper: Listener<E[K]> = (...args) => {
      this.off(event, wrapper);
      listener(...args);
    };
    return this.on(event, wrapper);
  }

  /** Resolves with the arguments of the next `event`. */
  next<K extends keyof E>(event: K, signal?: AbortSignal): Promise<E[K]> {
    return new Promise((resolve, reject) => {
      const listener: Listener<E[K]> = (...args) => {
        this.off(event, listener);
        signal?.removeEventListener('abort', onAbort);
        resolve(args);
      };
      const onAbort = (): void => {
        this.off(event, listener);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      this.on(event, listener);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  listenerCount<K extends keyof E>(event: K): number {
    return this.#listeners.get(event)?.size ?? 0;
  }

  /** Calls listeners synchronously, in registration order. */
  protected emit<K extends keyof E>(event: K, ...args: E[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const l of [...set]) l(...args);
  }
}
