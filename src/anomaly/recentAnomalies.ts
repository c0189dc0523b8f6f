/**
 * The most recent anomalies, for the admin API (`/anomalies/recent`): a fixed-size ring,
 * newest last. Peer identities live here and in logs, never in metric labels.
 */
export interface AnomalyRecord {
  readonly at: string;
  readonly listener: string;
  readonly route: string;
  readonly peer: string;
  readonly kind: string;
  /** the size or count that was unusual */
  readonly value: number;
  /** what was expected: the normal bound or the baseline */
  readonly expected: number;
  readonly action: 'observed' | 'blocked';
}

export class RecentAnomalies {
  private readonly ring: Array<AnomalyRecord | undefined>;
  private next = 0;
  private total = 0;

  constructor(capacity = 256) {
    this.ring = new Array<AnomalyRecord | undefined>(capacity);
  }

  add(record: AnomalyRecord): void {
    this.ring[this.next] = record;
    this.next = (this.next + 1) % this.ring.length;
    this.total++;
  }

  /** oldest first */
  list(): AnomalyRecord[] {
    const out: AnomalyRecord[] = [];
    for (let i = 0; i < this.ring.length; i++) {
      const r = this.ring[(this.next + i) % this.ring.length];
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  get count(): number {
    return this.total;
  }
}
