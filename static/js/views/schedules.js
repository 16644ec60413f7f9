// Recurring schedules: one row per schedule with its cron (and zone), its workflow, its next
// time and its last run, whose order opens on a click. Read from GET /api/schedules every
// few seconds (a schedule fires on the server's clock, not on an event the page waits for);
// the panel stays hidden while the app declares none. Every text is set with textContent.

import { api } from '../api.js';
import { fmtInt, h, setText } from '../dom.js';
import { KeyedRows } from './keyed.js';

const REFRESH_MS = 5000;

/** The cells of a schedule's row, as text: {cron, workflow, next, last, runs}. */
export function scheduleCells(view) {
  const last = view.last_run;
  const extra = [];
  if (view.skipped) extra.push(`${fmtInt(view.skipped)} skipped`);
  if (!view.catch_up) extra.push('no catch-up');
  return {
    cron: `${view.cron} (${view.tz})`,
    workflow: view.workflow || 'default',
    next: view.next_iso || 'never again',
    last: last ? last.at_iso : 'not yet',
    runs: `${fmtInt(view.runs)} run${view.runs === 1 ? '' : 's'}${extra.length ? `, ${extra.join(', ')}` : ''}`,
    order: last ? last.order_id : null,
  };
}

export class SchedulesPanel {
  /** wrap: the panel (hidden while there is none); root: its table body; openOrder(id). */
  constructor(wrap, root, openOrder, toast) {
    this.wrap = wrap;
    this.root = root;
    this.openOrder = openOrder;
    this.toast = toast;
    this.rows = new KeyedRows(root, (name) => this._row(name));
    this.loading = false;
    this.lastLoad = 0;
    this.failed = false;
  }

  /** Called with each stats update: reads the schedules again every few seconds. */
  noteStats() {
    if (Date.now() - this.lastLoad > REFRESH_MS) this.load();
  }

  async load() {
    if (this.loading) return;
    this.loading = true;
    this.lastLoad = Date.now();
    try {
      const data = await api('/api/schedules');
      this.failed = false;
      this.render(data.schedules);
    } catch (err) {
      if (!this.failed) this.toast(`Could not read the schedules: ${err.message}`, 'bad');
      this.failed = true;
    } finally {
      this.loading = false;
    }
  }

  _row(name) {
    const row = {
      el: h('tr', { class: 'schedule', dataset: { schedule: name } }),
      cron: h('td', { class: 'sch-cron mono' }),
      workflow: h('td', { class: 'sch-workflow' }),
      next: h('td', { class: 'sch-next num' }),
      last: h('span', { class: 'sch-last' }),
      runs: h('span', { class: 'sch-runs muted' }),
      open: h('button', { type: 'button', class: 'btn btn-sm sch-open', text: 'Open order' }),
      order: null,
    };
    row.open.addEventListener('click', () => { if (row.order) this.openOrder(row.order); });
    row.el.append(h('td', { class: 'sch-name', text: name }), row.cron, row.workflow, row.next,
      h('td', {}, row.last, ' ', row.runs, ' ', row.open));
    return row;
  }

  render(schedules) {
    const list = schedules || [];
    this.wrap.hidden = list.length === 0;
    this.rows.render(list, (view) => view.name, (row, view) => {
      const cells = scheduleCells(view);
      setText(row.cron, cells.cron);
      setText(row.workflow, cells.workflow);
      setText(row.next, cells.next);
      setText(row.last, cells.last);
      setText(row.runs, `(${cells.runs})`);
      row.order = cells.order;
      row.open.hidden = !cells.order;
      row.open.title = cells.order ? `Open order ${cells.order}` : '';
    });
  }
}
