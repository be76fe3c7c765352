import cliProgress from 'cli-progress';
import type { DownloadProgress } from '../hub/resolve-model.js';

/**
 * A byte progress bar on stderr for model downloads (MB, MB/s, ETA); where stderr is not a
 * terminal, one line per file instead.
 */
export class DownloadBar {
  private bar: cliProgress.SingleBar | null = null;
  private readonly start = performance.now();
  private readonly tty = process.stderr.isTTY;

  /** A file is about to be downloaded. */
  readonly onFile = (file: string, size: number): void => {
    if (!this.tty) process.stderr.write(`downloading ${file} (${mb(size)} MB)\n`);
  };

  readonly onProgress = (p: DownloadProgress): void => {
    if (!this.tty) return;
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar(
        { format: 'download {bar} {done}/{all} MB | {speed} MB/s | ETA {eta_formatted} | {file}', hideCursor: true, etaBuffer: 50, stream: process.stderr },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(p.total, 0, {});
    }
    const secs = (performance.now() - this.start) / 1000;
    this.bar.setTotal(p.total);
    this.bar.update(p.bytes, { file: p.file, done: mb(p.bytes), all: mb(p.total), speed: secs > 0 ? mb(p.bytes / secs) : '0.0' });
  };

  end(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}
