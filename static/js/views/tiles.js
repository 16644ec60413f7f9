// The header tiles: the cluster's numbers, readable at a glance.

import { fmtInt, fmtRate, h, plural, setClass, setText } from '../dom.js';

const n = (v) => v || 0;
const slotsOf = (s) => ({
  total: n(s.slots?.total), busy: n(s.slots?.busy), stuck: n(s.slots?.stuck), abandoned: n(s.slots?.abandoned),
});
const heldCount = (s) => Object.values(s.held_by_limits || {}).reduce((sum, v) => sum + n(v), 0);
/** "payment 3, shipping 1": ready tasks each step's limits hold back. */
const heldText = (s) => Object.entries(s.held_by_limits || {}).filter(([, v]) => v > 0)
  .map(([step, v]) => `${step} ${fmtInt(v)}`).join(', ');

/** "payment 2": ready tasks no live worker can run (no handler, or a tag nobody offers). */
const unroutableText = (s) => Object.entries(s.unroutable || {}).filter(([, v]) => v > 0)
  .map(([step, v]) => `${step} ${fmtInt(v)}`).join(', ');

/** Workflow definitions the running app lacks that still have unfinished orders (a rolling
 *  deploy's old version: its workers may go once none is left). */
const oldVersions = (s) => (s.definitions || []).filter((d) => !d.current && n(d.unfinished) > 0);
const versionOf = (d) => (d.version ? `${d.workflow} ${d.version}` : d.workflow);
/** "checkout v1 12 left (no worker)": per old version, the orders still to finish on it. */
const oldVersionsText = (s) => oldVersions(s)
  .map((d) => `${versionOf(d)} ${fmtInt(d.unfinished)} left${d.offered ? '' : ' (no worker)'}`).join(', ');
/** One line per definition: what remains on it, and who runs it. */
const versionsTitle = (s) => (s.definitions || []).map((d) => `${versionOf(d)}: ${plural(n(d.unfinished), 'unfinished order')}${
  d.current ? ', the running app\'s' : d.offered ? ', run by a live worker of it' : ', no live worker offers it'}`).join('\n');

const progressOf = (s) => s.progress || {};
const ratesOf = (s) => s.rates || {};

/** Each tile: what it shows of the stats (pure; the node tests read it). The order tiles
 *  are the server's `progress` (one stage per order, the rule in states.js ORDER_STAGE), the
 *  numbers /metrics exports and the table's filters count by. */
export const TILES = [
  {
    key: 'queued', label: 'Queued',
    value: (s) => fmtInt(n(progressOf(s).queued)),
    sub: (s) => `${fmtInt(n(s.tasks.ready) + n(s.tasks.assigned))} steps waiting`,
    title: () => 'Unfinished orders with no step running: their next steps wait for a free slot',
  },
  {
    key: 'running', label: 'Running', tone: (s) => (n(progressOf(s).running) ? 'run' : ''),
    value: (s) => fmtInt(n(progressOf(s).running)),
    sub: (s) => `${fmtInt(n(s.tasks.running))} steps running`,
    title: () => 'Orders with a step running on a worker',
  },
  {
    key: 'retrying', label: 'Retrying', tone: (s) => (n(progressOf(s).retrying) ? 'warn' : ''),
    value: (s) => fmtInt(n(progressOf(s).retrying)),
    sub: (s) => `${fmtInt(n(s.retries))} retries in all`,
    title: () => 'Orders with no step running and one waiting out a backoff before its retry',
  },
  {
    key: 'completed', label: 'Completed', tone: () => 'good',
    value: (s) => fmtInt(n(progressOf(s).completed)),
    sub: (s) => `of ${plural(n(s.orders_total), 'order')}`,
  },
  {
    key: 'failed', label: 'Failed', tone: (s) => (n(progressOf(s).failed) ? 'bad' : ''),
    value: (s) => fmtInt(n(progressOf(s).failed)),
    sub: (s) => `${fmtInt(n(progressOf(s).cancelled))} cancelled`,
  },
  {
    // One truth for moves: every task taken off a worker that died or drained, as the
    // event log's moves, the timeline's Moved column and the API's task.moves count them.
    key: 'moves', label: 'Moved', tone: (s) => (n(s.moves) ? 'move' : ''),
    value: (s) => fmtInt(n(s.moves)),
    sub: (s) => `${fmtInt(n(s.moves_by_reason?.['worker dead']))} dead · ${fmtInt(n(s.moves_by_reason?.drain))} drained`,
    title: (s) => `Tasks taken off a worker that left and put back in line: ${fmtInt(n(s.moves_by_reason?.['worker dead']))} after a death, ${fmtInt(n(s.moves_by_reason?.drain))} from drains. ${fmtInt(n(s.rejected_results))} late results rejected.`,
  },
  {
    // With the orders left on each old workflow version, so an operator knows when the
    // last worker of it may go (and which orders wait for one that is gone).
    key: 'workers', label: 'Workers',
    tone: (s) => (n(s.workers.dead) || oldVersions(s).some((d) => !d.offered) ? 'bad'
      : oldVersions(s).length ? 'warn' : ''),
    value: (s) => fmtInt(n(s.workers.alive) + n(s.workers.suspect) + n(s.workers.draining)),
    sub: (s) => {
      const parts = [`alive · ${fmtInt(n(s.workers.dead))} dead`];
      if (n(s.workers.suspect)) parts.push(`${s.workers.suspect} suspect`);
      if (n(s.workers.draining)) parts.push(`${s.workers.draining} draining`);
      const old = oldVersionsText(s);
      if (old) parts.push(`old versions: ${old}`);
      return parts.join(' · ');
    },
    title: (s) => versionsTitle(s) || 'Workers on the ring',
  },
  {
    // Capacity of the live workers, and why ready work may not start: slots stuck on
    // attempts that timed out, tasks a step's limits hold back; and threads abandoned to
    // hung handlers (their slots serve again, but the handlers have not returned).
    key: 'slots', label: 'Slots in use',
    tone: (s) => (slotsOf(s).stuck || unroutableText(s) ? 'bad' : heldCount(s) || slotsOf(s).abandoned ? 'warn' : ''),
    value: (s) => `${fmtInt(slotsOf(s).busy + slotsOf(s).stuck)}/${fmtInt(slotsOf(s).total)}`,
    sub: (s) => {
      const parts = [];
      if (slotsOf(s).stuck) parts.push(`${fmtInt(slotsOf(s).stuck)} stuck`);
      if (slotsOf(s).abandoned) parts.push(`${fmtInt(slotsOf(s).abandoned)} abandoned`);
      const held = heldText(s);
      if (held) parts.push(`held: ${held}`);
      const unroutable = unroutableText(s);
      if (unroutable) parts.push(`no worker can run: ${unroutable}`);
      return parts.join(' · ') || `${fmtInt(n(s.tasks.ready))} ready waiting`;
    },
    title: (s) => {
      const held = heldText(s);
      return [`${fmtInt(slotsOf(s).busy)} running, ${fmtInt(slotsOf(s).stuck)} stuck (timed out, not returned yet) of ${fmtInt(slotsOf(s).total)} slots on live workers`,
        `${fmtInt(slotsOf(s).abandoned)} threads abandoned to handlers that ignored their cancellation (their slots serve again)`,
        `${fmtInt(n(s.tasks.ready))} ready tasks wait for a slot or a limit`,
        held ? `held back by their step's limits: ${held}` : 'no step is at its limit'].join('\n');
    },
  },
  {
    // The same numbers as the chart's newest point and its legend (both from these stats).
    key: 'throughput', label: 'Throughput',
    value: (s) => fmtRate(ratesOf(s).orders_per_s ?? 0),
    unit: 'orders/s',
    sub: (s) => `${fmtRate(ratesOf(s).steps_per_s ?? 0)} steps/s`,
    title: (s) => `Per second over the last ${ratesOf(s).window ?? 10} s: ${fmtRate(ratesOf(s).orders_per_s ?? 0)} orders completed, ${fmtRate(ratesOf(s).steps_per_s ?? 0)} steps succeeded, ${fmtRate(ratesOf(s).failures_per_s ?? 0)} attempts failed`,
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
