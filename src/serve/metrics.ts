/**
 * `GET /metrics`: what an operator watches, in Prometheus' text format (prom-client). Each server
 * has its own registry, so servers started in one process (tests) count apart.
 *
 * | metric | type | labels |
 * |---|---|---|
 * | `setar_http_requests_total` | counter | route, method, status (499: the client left first) |
 * | `setar_http_request_duration_seconds` | histogram | route |
 * | `setar_http_requests_in_flight` | gauge | |
 * | `setar_queue_depth` | gauge | stage: `decode` (waiting for a worker), `model` (waiting for a batch) |
 * | `setar_batch_size` | histogram | (images per model run) |
 * | `setar_images_decoded_total` | counter | |
 * | `setar_images_refused_total` | counter | reason: `too_large` (above --max-pixels), `undecodable` |
 * | `setar_ood_total`, `setar_id_total` | counter | label: the verdict's top class |
 *
 * plus prom-client's process and Node.js metrics (CPU, memory, event-loop lag, GC). The OOD share
 * over time, `sum(rate(setar_ood_total[1h])) / (sum(rate(setar_ood_total[1h])) + sum(rate(setar_id_total[1h])))`,
 * is the drift signal to alert on.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Live values the gauges read when scraped. */
export interface MetricSources {
  inFlight(): number;
  queueDepth(): { decode: number; model: number };
}

/** Why an image was refused. */
export type RefusalReason = 'too_large' | 'undecodable';

/** The server's metrics; see the module comment. */
export class ServeMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly duration: Histogram<'route'>;
  private readonly batch: Histogram;
  private readonly decoded: Counter;
  private readonly refused: Counter<'reason'>;
  private readonly ood: Counter<'label'>;
  private readonly id: Counter<'label'>;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'setar_http_requests_total', help: 'HTTP requests answered, by route, method and status (499: the client left first)', labelNames: ['route', 'method', 'status'], registers });
    this.duration = new Histogram({
      name: 'setar_http_request_duration_seconds', help: 'Time from a request to its answer, by route', labelNames: ['route'], registers,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
    new Gauge({ name: 'setar_http_requests_in_flight', help: 'HTTP requests received and not answered yet', registers, collect() { this.set(sources.inFlight()); } });
    new Gauge({
      name: 'setar_queue_depth', help: 'Images waiting: for a decoding worker (stage="decode") or for a model batch (stage="model")', labelNames: ['stage'], registers,
      collect() {
        const d = sources.queueDepth();
        this.set({ stage: 'decode' }, d.decode);
        this.set({ stage: 'model' }, d.model);
      },
    });
    this.batch = new Histogram({ name: 'setar_batch_size', help: 'Images per model run (dynamic batching)', buckets: [1, 2, 4, 8, 16, 32, 64], registers });
    this.decoded = new Counter({ name: 'setar_images_decoded_total', help: 'Uploaded images decoded and preprocessed', registers });
    this.refused = new Counter({ name: 'setar_images_refused_total', help: 'Uploaded images refused: above --max-pixels (reason="too_large") or not decodable (reason="undecodable")', labelNames: ['reason'], registers });
    for (const reason of ['too_large', 'undecodable'] as const) this.refused.inc({ reason }, 0);
    this.ood = new Counter({ name: 'setar_ood_total', help: 'Verdicts out of distribution, by top label', labelNames: ['label'], registers });
    this.id = new Counter({ name: 'setar_id_total', help: 'Verdicts in distribution, by top label', labelNames: ['label'], registers });
    collectDefaultMetrics({ register: this.registry });
  }

  /** Starts every verdict counter at 0 for each label, so rates exist before the first verdict. */
  labels(labels: readonly string[]): this {
    for (const label of labels) {
      this.ood.inc({ label }, 0);
      this.id.inc({ label }, 0);
    }
    return this;
  }

  request(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.duration.observe({ route }, seconds);
  }

  batchRun(size: number): void {
    this.batch.observe(size);
  }

  imageDecoded(): void {
    this.decoded.inc();
  }

  imageRefused(reason: RefusalReason): void {
    this.refused.inc({ reason });
  }

  verdict(label: string, ood: boolean): void {
    (ood ? this.ood : this.id).inc({ label });
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ text: string; type: string }> {
    return { text: await this.registry.metrics(), type: this.registry.contentType };
  }
}
