import cliProgress from 'cli-progress';

/**
 * A progress bar on stderr with images/s and ETA; silent when stderr is not a terminal (CI
 * logs, pipes), where the log lines tell the story instead.
 */
export class ProgressBar {
  private bar: cliProgress.SingleBar | null = null;
  private start = 0;

  begin(label: string, total: number): void {
    this.end();
    this.start = performance.now();
    this.bar = new cliProgress.SingleBar(
      { format: `${label.padEnd(18)} {bar} {value}/{total} | {rate} img/s | ETA {eta_formatted}`, hideCursor: true, etaBuffer: 50, stream: process.stderr },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total, 0, { rate: '0.0' });
  }

  update(done: number): void {
    const secs = (performance.now() - this.start) / 1000;
    this.bar?.update(done, { rate: secs > 0 ? (done / secs).toFixed(1) : '0.0' });
  }

  end(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
