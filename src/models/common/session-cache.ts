import type { Session } from '../../runtime/session.js';

interface Entry {
  readonly promise: Promise<Session>;
  /** Set once compiled. */
  session?: Session;
}

/**
 * Compiled sessions by key, most recently used last; beyond `max` the least recently used are
 * released — except a session whose device outputs are still alive (a search's cached hidden
 * states): releasing it would free them under their holder. Each session keeps an arena sized for
 * its largest batch, so only the few used lately are kept.
 */
export class SessionCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly max: number) {}

  /** The session for `key`, compiled by `create` on first use. */
  get(key: string, create: () => Promise<Session>): Promise<Session> {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.promise;
    }
    const promise = Promise.resolve().then(create);
    const entry: Entry = { promise };
    this.entries.set(key, entry);
    promise.then((s) => (entry.session = s), () => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    for (const [k, e] of this.entries) {
      if (this.entries.size <= this.max) break;
      if (k === key || (e.session?.liveOutputs ?? 0) > 0) continue;
      this.remove(k, e);
    }
    return promise;
  }

  /** Releases (once they are compiled) the sessions whose key `which` selects, outputs included. */
  drop(which: (key: string) => boolean): void {
    for (const [k, e] of [...this.entries]) if (which(k)) this.remove(k, e);
  }

  /** Releases every session; waits for those still compiling. */
  async release(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    for (const e of all) await e.promise.then((s) => s.release()).catch(() => undefined);
  }

  private remove(key: string, e: Entry): void {
    this.entries.delete(key);
    void e.promise.then((s) => s.release()).catch(() => undefined);
  }
}
