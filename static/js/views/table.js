// The orders table, virtualised: only the rows in view (plus a few) exist in the DOM, pooled
// and repositioned on scroll; a row is rewritten only when its order's version changed.
// Filtering and search rebuild the list of matching orders at most once per frame.

import { fmtDuration, fmtInt, h, setClass, setText } from '../dom.js';
import { orderStatus, taskState, TERMINAL } from '../states.js';

export const ROW_HEIGHT = 32;
const OVERSCAN = 6;

export const FILTERS = [
  { key: 'all', label: 'All', statuses: null },
  { key: 'active', label: 'Active', statuses: new Set(['pending', 'in_progress']) },
  { key: 'completed', label: 'Completed', statuses: new Set(['completed']) },
  { key: 'failed', label: 'Failed', statuses: new Set(['failed']) },
  { key: 'cancelled', label: 'Cancelled', statuses: new Set(['cancelled']) },
];

export class OrdersTable {
  /** els: {body, spacer, filters, search, count}; store: Store; openOrder(id) */
  constructor(els, store, openOrder) {
    this.els = els;
    this.store = store;
    this.book = store.orders;
    this.openOrder = openOrder;
    this.filter = FILTERS[0];
    this.query = '';
    this.view = [];
    this.viewKey = null; // what `view` was built from
    this.pool = [];
    this.filterButtons = new Map();
    this.stats = { renders: 0, rowWrites: 0, lastRenderMs: 0, maxRenderMs: 0, totalRenderMs: 0 };
    this.onChange = null; // set by the app: schedule a frame

    for (const f of FILTERS) {
      const count = h('span', { class: 'seg-count', text: '0' });
      const button = h('button', { type: 'button', class: 'seg', dataset: { filter: f.key }, 'aria-pressed': String(f === this.filter) },
        h('span', { text: f.label }), count);
      button.addEventListener('click', () => this.setFilter(f));
      els.filters.append(button);
      this.filterButtons.set(f.key, { button, count });
    }
    els.search.addEventListener('input', () => {
      this.query = els.search.value;
      this.viewKey = null;
      els.body.scrollTop = 0;
      this.onChange?.();
    });
    els.search.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter') return;
      const q = els.search.value.trim();
      if (!q) return;
      // An exact id opens its timeline even when the order is not in the table.
      const match = this.view?.length === 1 ? this.view[0].id : (this.book.get(q) ? q : (/^o-\S+$/.test(q) ? q : null));
      if (!match) return;
      // The timeline takes the focus (its Close button): without this, the same Enter
      // would go on to press that button and close it again at once.
      event.preventDefault();
      openOrder(match);
    });
    els.body.addEventListener('scroll', () => this.onChange?.(), { passive: true });
    els.body.addEventListener('click', (event) => {
      const row = event.target.closest('.row[data-id]');
      if (row) openOrder(row.dataset.id);
    });
    els.body.addEventListener('keydown', (event) => {
      const row = event.target.closest('.row[data-id]');
      if (row && (event.key === 'Enter' || event.key === ' ')) {
        event.preventDefault();
        openOrder(row.dataset.id);
      }
    });
  }

  setFilter(filter) {
    this.filter = filter;
    this.viewKey = null;
    this.els.body.scrollTop = 0;
    for (const [key, { button }] of this.filterButtons) button.setAttribute('aria-pressed', String(key === filter.key));
    this.onChange?.();
  }

  _rebuildView() {
    const b = this.book;
    // Without a filter or a query the view is the book's own list, read back to front.
    const filtered = this.filter.statuses !== null || this.query.trim() !== '';
    // Status changes move orders between filters; any change may matter to a search (an
    // order's customer arrives after its id).
    const key = filtered
      ? `${this.filter.key}|${this.query}|${b.structureVersion}|${b.statusVersion}|${this.query.trim() ? b.changeVersion : ''}`
      : `all|${b.structureVersion}`;
    if (key === this.viewKey) return false;
    const anchor = this._anchor();
    this.viewKey = key;
    if (!filtered) this.view = null;
    else {
      const q = this.query.trim().toLowerCase();
      const statuses = this.filter.statuses;
      const out = [];
      const list = b.list;
      for (let i = list.length - 1; i >= 0; i--) {
        const rec = list[i];
        if (statuses && !statuses.has(rec.status)) continue;
        if (q && !rec.id.toLowerCase().includes(q) && !(rec.customer || '').toLowerCase().includes(q)) continue;
        out.push(rec);
      }
      this.view = out;
    }
    this._restoreAnchor(anchor);
    return true;
  }

  get length() {
    return this.view === null ? this.book.list.length : this.view.length;
  }

  at(index) {
    if (this.view !== null) return this.view[index];
    const list = this.book.list;
    return list[list.length - 1 - index];
  }

  // Keep the row at the top of the viewport in place when orders arrive above it.
  _anchor() {
    const body = this.els.body;
    if (body.scrollTop < ROW_HEIGHT) return null;
    const index = Math.floor(body.scrollTop / ROW_HEIGHT);
    const rec = this.at(index);
    return rec ? { rec, offset: body.scrollTop - index * ROW_HEIGHT } : null;
  }

  _restoreAnchor(anchor) {
    if (!anchor) return;
    let index;
    if (this.view === null) {
      const list = this.book.list;
      const at = list.lastIndexOf(anchor.rec);
      index = at < 0 ? -1 : list.length - 1 - at;
    } else index = this.view.indexOf(anchor.rec);
    if (index >= 0) {
      this.els.spacer.style.height = `${this.length * ROW_HEIGHT}px`;
      this.els.body.scrollTop = index * ROW_HEIGHT + anchor.offset;
    }
  }

  _counts() {
    const c = this.book.countByStatus();
    return {
      all: c.all,
      active: (c.pending || 0) + (c.in_progress || 0),
      completed: c.completed || 0,
      failed: c.failed || 0,
      cancelled: c.cancelled || 0,
    };
  }

  _row() {
    const row = {
      id: null, version: -1, tick: -1,
      el: h('div', { class: 'row', role: 'row', tabindex: '0' }),
      cells: {
        id: h('span', { class: 'cell c-id mono', role: 'cell' }),
        customer: h('span', { class: 'cell c-customer', role: 'cell' }),
        status: h('span', { class: 'cell c-status', role: 'cell' }),
        pipeline: h('span', { class: 'cell c-pipeline', role: 'cell' }),
        attempts: h('span', { class: 'cell c-attempts num', role: 'cell' }),
        worker: h('span', { class: 'cell c-worker mono', role: 'cell' }),
        age: h('span', { class: 'cell c-age num', role: 'cell' }),
      },
      badge: h('span', { class: 'badge' }),
      chips: [],
    };
    row.cells.status.append(row.badge);
    row.el.append(...Object.values(row.cells));
    this.els.spacer.append(row.el);
    return row;
  }

  _chip(row, index) {
    while (row.chips.length <= index) {
      const chip = {
        el: h('span', { class: 'chip chip-2' }),
        glyph: h('span', { class: 'chip-glyph', 'aria-hidden': 'true' }),
        name: h('span', { class: 'chip-name' }),
        state: h('span', { class: 'chip-state' }),
        extra: h('span', { class: 'chip-extra' }),
      };
      chip.el.append(h('span', { class: 'chip-top' }, chip.glyph, chip.name), h('span', { class: 'chip-bottom' }, chip.state, chip.extra));
      row.cells.pipeline.append(chip.el);
      row.chips.push(chip);
    }
    return row.chips[index];
  }

  _write(row, rec, now) {
    this.stats.rowWrites++;
    row.el.dataset.id = rec.id;
    row.el.dataset.status = rec.status;
    setText(row.cells.id, rec.id);
    row.cells.id.title = rec.number ? `#${rec.number}` : '';
    setText(row.cells.customer, rec.customer ?? '…');
    setClass(row.cells.customer, rec.customer === null || rec.customer === undefined ? 'cell c-customer muted' : 'cell c-customer');
    const st = orderStatus(rec.status);
    setText(row.badge, `${st.glyph} ${st.label}`);
    setClass(row.badge, `badge ${st.cls}`);
    let attempts = 0;
    let worker = null;
    rec.steps.forEach((step, i) => {
      const task = rec.tasks[step] || { status: 'pending', attempts: 0 };
      const ts = taskState(task.status);
      const chip = this._chip(row, i);
      setClass(chip.el, `chip chip-2 ${ts.cls}`);
      setText(chip.glyph, ts.glyph);
      setText(chip.name, step);
      setText(chip.state, ts.label);
      const extra = [];
      if (task.attempts > 1) extra.push(`×${task.attempts}`);
      if (task.reassignments) extra.push('⇄');
      setText(chip.extra, extra.join(' '));
      chip.el.title = `${step}: ${ts.label}${task.attempts ? `, attempt ${task.attempts}` : ''}${task.worker ? ` on ${task.worker}` : ''}${task.reassignments ? `, moved ${task.reassignments}×` : ''}`;
      attempts += task.attempts || 0;
      if (task.worker && task.status !== 'pending') worker = task.worker;
    });
    for (let i = rec.steps.length; i < row.chips.length; i++) row.chips[i].el.remove();
    row.chips.length = Math.min(row.chips.length, rec.steps.length);
    setText(row.cells.attempts, attempts ? fmtInt(attempts) : '–');
    setClass(row.cells.attempts, attempts > rec.steps.length ? 'cell c-attempts num hot' : 'cell c-attempts num');
    setText(row.cells.worker, worker ?? '–');
    this._writeAge(row, rec, now);
  }

  _writeAge(row, rec, now) {
    if (TERMINAL.has(rec.status) && rec.finishedAt && rec.submittedAt) {
      setText(row.cells.age, fmtDuration(rec.finishedAt - rec.submittedAt));
      row.cells.age.title = 'time to finish';
    } else if (rec.submittedAt) {
      setText(row.cells.age, fmtDuration(now - rec.submittedAt));
      row.cells.age.title = 'running for';
    } else setText(row.cells.age, '–');
  }

  /** Draw the rows in view. `tick` changes once a second so active rows' ages move. */
  render(tick) {
    const started = performance.now();
    const viewChanged = this._rebuildView();
    const body = this.els.body;
    const total = this.length;
    const height = `${total * ROW_HEIGHT}px`;
    if (this.els.spacer.style.height !== height) this.els.spacer.style.height = height;
    const first = Math.max(0, Math.floor(body.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const visible = Math.ceil(body.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
    const count = Math.max(0, Math.min(visible, total - first));
    while (this.pool.length < count) this.pool.push(this._row());
    const now = this.store.serverNow();
    for (let i = 0; i < this.pool.length; i++) {
      const row = this.pool[i];
      if (i >= count) {
        if (row.id !== null) {
          row.el.hidden = true;
          row.id = null;
        }
        continue;
      }
      const rec = this.at(first + i);
      const top = `translateY(${(first + i) * ROW_HEIGHT}px)`;
      if (row.el.style.transform !== top) row.el.style.transform = top;
      if (row.id !== rec.id || row.version !== rec.version) {
        row.el.hidden = false;
        this._write(row, rec, now);
        row.id = rec.id;
        row.version = rec.version;
        row.tick = tick;
      } else if (row.tick !== tick && !TERMINAL.has(rec.status)) {
        this._writeAge(row, rec, now);
        row.tick = tick;
      }
    }
    const countsKey = `${this.book.structureVersion}|${this.book.statusVersion}|${total}`;
    if (viewChanged || countsKey !== this._countsKey) {
      this._countsKey = countsKey;
      const counts = this._counts();
      for (const [key, { count: el }] of this.filterButtons) setText(el, fmtInt(counts[key]));
      setText(this.els.count, this.length === counts.all ? `${fmtInt(total)} orders` : `${fmtInt(total)} of ${fmtInt(counts.all)} orders`);
      this.els.empty.hidden = total > 0;
    }
    const ms = performance.now() - started;
    const s = this.stats;
    s.renders++;
    s.lastRenderMs = ms;
    s.totalRenderMs += ms;
    if (ms > s.maxRenderMs) s.maxRenderMs = ms;
  }
}
