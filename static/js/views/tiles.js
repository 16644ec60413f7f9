// The header tiles: the cluster's numbers, readable at a glance.

import { fmtInt, fmtRate, h, setClass, setText } from '../dom.js';

const n = (v) => v || 0;
const slotsOf = (s) => ({ total: n(s.slots?.total), busy: n(s.slots?.busy), stuck: n(s.slots?.stuck) });
const heldCount = (s) => Object.values(s.held_by_limits || {}).reduce((sum, v) => sum + n(v), 0);
/** "payment 3, shipping 1": ready tasks each step's limits hold back. */
const heldText = (s) => Object.entries(s.held_by_limits || {}).filter(([, v]) => v > 0)
  .map(([step, v]) => `${step} ${fmtInt(v)}`).join(', ');

/** "payment 2": ready tasks no live worker can run (no handler, or a tag nobody offers). */
const unroutableText = (s) => Object.entries(s.unroutable || {}).filter(([, v]) => v > 0)
  .map(([step, v]) => `${step} ${fmtInt(v)}`).join(', ');

/** Each tile: what it shows of the stats (pure; the node tests read it). */
export const TILES = [
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
    // Capacity of the live workers, and why ready work may not start: slots stuck on
    // attempts that timed out, tasks a step's limits hold back.
    key: 'slots', label: 'Slots in use',
    tone: (s) => (slotsOf(s).stuck || unroutableText(s) ? 'bad' : heldCount(s) ? 'warn' : ''),
    value: (s) => `${fmtInt(slotsOf(s).busy + slotsOf(s).stuck)}/${fmtInt(slotsOf(s).total)}`,
    sub: (s) => {
      const parts = [];
      if (slotsOf(s).stuck) parts.push(`${fmtInt(slotsOf(s).stuck)} stuck`);
      const held = heldText(s);
      if (held) parts.push(`held: ${held}`);
      const unroutable = unroutableText(s);
      if (unroutable) parts.push(`no worker can run: ${unroutable}`);
      return parts.join(' · ') || `${fmtInt(n(s.tasks.ready))} ready waiting`;
    },
    title: (s) => {
      const held = heldText(s);
      return [`${fmtInt(slotsOf(s).busy)} running, ${fmtInt(slotsOf(s).stuck)} stuck (timed out, not returned yet) of ${fmtInt(slotsOf(s).total)} slots on live workers`,
        `${fmtInt(n(s.tasks.ready))} ready tasks wait for a slot or a limit`,
        held ? `held back by their step's limits: ${held}` : 'no step is at its limit'].join('\n');
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
    const s = { orders: {}, workers: {}, tasks: {}, ...stats };
    for (const { tile, el, value, sub } of this.cells.values()) {
      setText(value, tile.value(s));
      setText(sub, tile.sub(s));
      if (tile.title) {
        const title = tile.title(s);
        if (el.title !== title) el.title = title;
      }
      const tone = tile.tone ? tile.tone(s) : '';
      setClass(el, tone ? `tile tone-${tone}` : 'tile');
    }
  }
}
