// A typed listener registry with an async-iterator view. No I/O.

/** Removes a listener. */
export type Unsubscribe = () => void;

/** Listeners by event name, each typed by `Map`. */
export class Emitter<Map extends object> {
  private readonly listeners = new globalThis.Map<keyof Map, Set<(value: never) => void>>();

  /** Calls `listener` for every `kind` event until the returned function is called. */
  on<K extends keyof Map>(kind: K, listener: (value: Map[K]) => void): Unsubscribe {
    let set = this.listeners.get(kind);
    if (!set) {
      set = new Set();
      this.listeners.set(kind, set);
    }
    set.add(listener as (value: never) => void);
    return () => set.delete(listener as (value: never) => void);
  }

  /** Calls `listener` for the next `kind` event only. */
  once<K extends keyof Map>(kind: K, listener: (value: Map[K]) => void): Unsubscribe {
    const off = this.on(kind, (value) => {
      off();
      listener(value);
    });
    return off;
  }

  /** Delivers `value` to the listeners of `kind`; a throwing listener does not stop the others. */
  emit<K extends keyof Map>(kind: K, value: Map[K]): void {
    const set = this.listeners.get(kind);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (value: Map[K]) => void)(value);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /**
   * The `kind` events as an async iterator: buffered from the call on, ended by `return()`
   * (a `break` out of `for await`) or by `end()`.
   */
  iterate<K extends keyof Map>(kind: K): AsyncIterableIterator<Map[K]> {
    const buffer: Map[K][] = [];
    let wake: (() => void) | null = null;
    let done = false;
    const off = this.on(kind, (value) => {
      buffer.push(value);
      wake?.();
    });
    this.enders.add(finish);
    const self = this;
    function finish(): void {
      done = true;
      off();
      self.enders.delete(finish);
      wake?.();
    }
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next(): Promise<IteratorResult<Map[K]>> {
        while (buffer.length === 0 && !done) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = null;
        }
        if (buffer.length > 0) return { value: buffer.shift()!, done: false };
        return { value: undefined, done: true };
      },
      async return(): Promise<IteratorResult<Map[K]>> {
        finish();
        return { value: undefined, done: true };
      },
    };
  }

  private readonly enders = new Set<() => void>();

  /** Ends every open iterator (after its buffered values). */
  end(): void {
    for (const finish of [...this.enders]) finish();
  }
}
