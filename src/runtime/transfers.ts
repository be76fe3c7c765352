/** Something with a byte size: a host tensor's data. */
interface Sized {
  readonly data?: { readonly byteLength: number } | unknown;
  readonly location?: string;
}

function hostBytes(values: readonly Sized[]): number {
  let n = 0;
  for (const v of values) {
    // device-resident tensors ('gpu-buffer') cross nothing; string data never occurs here
    if (v.location !== undefined && v.location !== 'cpu') continue;
    const d = v.data as { byteLength?: number } | undefined;
    if (d && typeof d.byteLength === 'number') n += d.byteLength;
  }
  return n;
}

/**
 * Bytes copied between host and device memory by session runs: each host tensor fed to a run on
 * a device is uploaded, each host tensor fetched is downloaded. Copies ORT makes inside a run
 * (around nodes that fall back to the CPU provider) are not seen here.
 *
 * @example
 * const transfers = new TransferCounter();
 * const s = await Session.create(bytes, 'tower', { executionProviders: ['webgpu'], transfers });
 * await s.run(feeds);
 * transfers.uploaded; // bytes of feeds
 */
export class TransferCounter {
  uploaded = 0;
  downloaded = 0;
  runs = 0;

  /** Adds one run's fed and fetched tensors. */
  count(fed: readonly Sized[], fetched: readonly Sized[]): void {
    this.uploaded += hostBytes(fed);
    this.downloaded += hostBytes(fetched);
    this.runs++;
  }

  /** The figures so far, and zeroes them (per image, per candidate, per step). */
  take(): { uploaded: number; downloaded: number; runs: number } {
    const t = { uploaded: this.uploaded, downloaded: this.downloaded, runs: this.runs };
    this.uploaded = 0;
    this.downloaded = 0;
    this.runs = 0;
    return t;
  }
}
