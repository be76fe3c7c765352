import { connect, type Socket } from 'node:net';

/** A raw TCP connection to an HTTP server, for requests no HTTP client would send (cut, malformed, stalled). */
export class RawConnection {
  private text = '';
  readonly closed: Promise<void>;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => {
      this.text += c;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => undefined); // a reset by the server is an outcome the tests inspect
    this.closed = new Promise((resolve) => socket.on('close', () => {
      for (const w of this.waiters.splice(0)) w();
      resolve();
    }));
  }

  static open(url: string): Promise<RawConnection> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const s = connect(Number(u.port), u.hostname, () => resolve(new RawConnection(s)));
      s.once('error', reject);
    });
  }

  write(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve) => this.socket.write(data, () => resolve()));
  }

  /** Everything received so far. */
  get received(): string {
    return this.text;
  }

  /** Waits until the received text matches `re` (or the connection closes: then rejects). */
  async waitFor(re: RegExp, what = re.source): Promise<RegExpExecArray> {
    for (;;) {
      const m = re.exec(this.text);
      if (m) return m;
      if (this.socket.destroyed || this.socket.readableEnded) throw new Error(`connection closed before ${what}; received: ${JSON.stringify(this.text.slice(0, 300))}`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Waits for one complete response with a Content-Length body; returns its status, headers and body. */
  async response(): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    const m = await this.waitFor(/HTTP\/1\.1 ([2-5]\d\d) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n/, 'a response');
    const headers: Record<string, string> = {};
    for (const line of m[2]!.split('\r\n').filter(Boolean)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    const start = m.index + m[0].length;
    const len = Number(headers['content-length'] ?? 0);
    await this.waitFor(new RegExp(`[\\s\\S]{${start + len}}`), 'the response body');
    const body = this.text.slice(start, start + len);
    this.text = this.text.slice(start + len);
    return { status: Number(m[1]), headers, body };
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
