// The header tiles: the cluster's numbers, readable at a glance.

import { fmtInt, fmtRate, h, setClass, setText } from '../dom.js';

const n = (v) => v || 0;

const TILES = [
  {
    key: 'active', label: 'In progress',
    value: (s) => fmtInt(n(s.orders.pending) + n(s.orders.in_progress)),
    sub: (s) => `${fmtInt(n(s.orders.pending))} not started`,
  },
  {
    key: 'completed', label: 'Completed', tone: () => 'good',
    value: (s) => fmtInt(n(s.orders.completed)),
    sub: (s) => `of ${fmtInt(n(s.orders_total))} orders`,
  },
  {
    key: 'failed', label: 'Failed', tone: (s) => (n(s.orders.failed) ? 'bad' : ''),
    value: (s) => fmtInt(n(s.orders.failed)),
    sub: (s) => `${fmtInt(n(s.orders.cancelled))} cancelled`,
  },
  {
    key: 'retries', label: 'Retried', tone: (s) => (n(s.retries) ? 'warn' : ''),
    value: (s) => fmtInt(n(s.retries)),
    sub: () => 'failed attempts retried',
  },
  {
    key: 'reassignments', label: 'Reassigned', tone: (s) => (n(s.reassignments) ? 'move' : ''),
    value: (s) => fmtInt(n(s.reassignments)),
    sub: (s) => `${fmtInt(n(s.rejected_results))} late results rejected`,
  },
  {
    key: 'workers', label: 'Workers alive',
    tone: (s) => (n(s.workers.dead) ? 'bad' : ''),
    value: (s) => fmtInt(n(s.workers.alive) + n(s.workers.suspect) + n(s.workers.draining)),
    sub: (s) => {
      const parts = [`${fmtInt(n(s.workers.dead))} dead`];
      if (n(s.workers.suspect)) parts.push(`${s.workers.suspect} suspect`);
      if (n(s.workers.draining)) parts.push(`${s.workers.draining} draining`);
      return parts.join(' · ');
    },
  },
  {
    key: 'throughput', label: 'Throughput',
    value: (s) => fmtRate(s.throughput),
    unit: 'orders/s',
    sub: () => 'average, last minute',
  },
];

export class Tiles {
  constructor(root) {
    this.cells = new Map();
    for (const tile of TILES) {
      const value = h('span', { class: 'tile-value', text: '–' });
      const sub = h('div', { class: 'tile-sub', text: ' ' });
      const el = h('div', { class: 'tile', dataset: { tile: tile.key } },
        h('div', { class: 'tile-label', text: tile.label }),
        h('div', { class: 'tile-main' }, value, tile.unit ? h('span', { class: 'tile-unit', text: tile.unit }) : null),
        sub);
      root.append(el);
      this.cells.set(tile.key, { tile, el, value, sub });
    }
  }

  render(stats) {
    if (!stats) return;
    const s = { orders: {}, workers: {}, ...stats };
    for (const { tile, el, value, sub } of this.cells.values()) {
      setText(value, tile.value(s));
      setText(sub, tile.sub(s));
      const tone = tile.tone ? tile.tone(s) : '';
      setClass(el, tone ? `tile tone-${tone}` : 'tile');
    }
  }
}
