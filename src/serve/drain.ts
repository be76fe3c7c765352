import type { Server, ServerResponse } from 'node:http';

/** How a drain went. */
export interface DrainReport {
  /** Requests in progress when it began. */
  readonly inFlight: number;
  /** Responses completed during the drain (those in progress, and any that came on open connections). */
  readonly answered: number;
  /** Requests whose connection the drain timeout ended (stalled uploads, slow readers). */
  readonly ended: number;
}

/**
 * The connection side of a graceful shutdown: tracks every response in progress; `drain()` stops
 * accepting connections, marks every answer from then on `Connection: close`, waits for the
 * responses in progress, and ends the connections still open when the timeout (or `endNow()`)
 * comes.
 */
export class ConnectionDrain {
  private readonly open = new Set<ServerResponse>();
  private answered = 0;
  private onSettled: (() => void) | null = null;
  private end: () => void = () => undefined;
  private started = false;

  constructor(private readonly server: Server) {}

  /** Whether a drain has begun. */
  get draining(): boolean {
    return this.started;
  }

  /** Responses not finished yet. */
  get inFlight(): number {
    return this.open.size;
  }

  /** Follows `res` until it closes. */
  track(res: ServerResponse): void {
    this.open.add(res);
    if (this.started) res.setHeader('Connection', 'close');
    res.on('close', () => {
      this.open.delete(res);
      if (this.started && res.writableFinished) this.answered++;
      this.onSettled?.();
    });
  }

  /** Ends the drain now: what the timeout does. */
  endNow(): void {
    this.end();
  }

  /** See the class comment; resolves once every connection is closed. */
  async drain(timeoutMs: number): Promise<DrainReport> {
    this.started = true;
    const inFlight = this.open.size;
    for (const res of this.open) if (!res.headersSent) res.setHeader('Connection', 'close');
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    let ended = 0;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.end(), timeoutMs);
      this.end = () => {
        clearTimeout(timer);
        ended = this.open.size;
        this.server.closeAllConnections();
        resolve();
      };
      this.onSettled = () => {
        if (this.open.size === 0) {
          clearTimeout(timer);
          resolve();
        }
      };
      this.onSettled();
    });
    this.onSettled = null;
    this.end = () => undefined;
    this.server.closeAllConnections(); // idle keep-alive connections
    await closed;
    return { inFlight, answered: this.answered, ended };
  }
}
