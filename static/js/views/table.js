// The orders table, virtualised: only the rows in view (plus a few) exist in the DOM, pooled
// and repositioned on scroll; a row is rewritten only when its order's version changed.
// Filtering and search rebuild the list of matching orders at most once per frame.
//
// The filters are the stages the tiles count (states.js ORDER_STAGE), and their counts are
// the server's (`stats.progress`, as the tiles'), never the page's: the page holds only the
// newest orders. Choosing a filter fetches the orders of that stage the page does not hold
// (up to the orders it may hold), so the rows shown are the orders counted. The search box
// looks for a part of an order's id, customer, SKU, error or workflow, with a submission time
// range: the orders held that match show at once, the server's answer (its memory and its
// journal, GET /api/orders?text=...) a moment later; the search is the page's address
// (search.js), so it can be shared and a reload keeps it. Enter on an id opens that order
// (held or not: the server answers). A filtered set (or, under Failed, a group of failures
// by step and reason) can be retried or cancelled in one action.

import { api } from '../api.js';
import { fmtDuration, fmtInt, h, plural, setClass, setText } from '../dom.js';
import { orderError } from '../orders.js';
import { apiQuery, describeSearch, isActive, matchesHeld, searchFromLocation, searchToLocation } from '../search.js';
import { orderStageStyle, taskState, TERMINAL } from '../states.js';

export const DEFAULT_ROW_HEIGHT = 32;
const OVERSCAN = 6;
const GROUPS_REFRESH_MS = 1000;
// What an order id looks like (scheduler/runtime/ids.py): Enter opens it even when the page
// does not hold it.
const ORDER_ID = /^o-[0-9a-z]{6,}$/i;

// A filter whose orders the page lacks reads them again at most this often (its count is
// the server's, which changes with every order).
const RELOAD_GAP_MS = 2000;
// Typing asks the server once it pauses this long; Enter or a time bound asks at once.
const SEARCH_PAUSE_MS = 300;
// Orders a search reads from the server (one page of GET /api/orders, its largest).
const SEARCH_LIMIT = 500;

/** The order statuses GET /api/orders filters by, that hold each stage's orders. */
export const STAGE_STATUSES = {
  queued: ['pending', 'in_progress'], running: ['in_progress'], retrying: ['in_progress'],
  completed: ['completed'], failed: ['failed'], cancelled: ['cancelled'],
};

/** The server's count of orders by stage (`stats.progress`), with `all`; null without it. */
export function serverCounts(stats) {
  const progress = stats?.progress;
  if (!progress) return null;
  const counts = { all: 0 };
  for (const stage of Object.keys(STAGE_STATUSES)) {
    counts[stage] = progress[stage] ?? 0;
    counts.all += counts[stage];
  }
  return counts;
}

export const FILTERS = [
  { key: 'all', label: 'All', stages: null },
  { key: 'queued', label: 'Queued', stages: new Set(['queued']) },
  { key: 'running', label: 'Running', stages: new Set(['running']) },
  { key: 'retrying', label: 'Retrying', stages: new Set(['retrying']) },
  { key: 'completed', label: 'Completed', stages: new Set(['completed']) },
  { key: 'failed', label: 'Failed', stages: new Set(['failed']) },
  { key: 'cancelled', label: 'Cancelled', stages: new Set(['cancelled']) },
];

/** Failed attempts an order's steps retried (attempts beyond each step's first). */
export function retriesOf(rec) {
  let retries = 0;
  for (const step of rec.steps) retries += Math.max(0, (rec.tasks[step]?.attempts || 0) - 1);
  return retries;
}

export class OrdersTable {
  /** els: {body, spacer, filters, search, since, until, clear, count, empty, triage, groups,
   *  bulk, bulkWhat, bulkRetry, bulkCancel}; store: Store; openOrder(id); deps: {confirm,
   *  toast} */
  constructor(els, store, openOrder, { confirm = null, toast = () => {}, loadStatuses = null } = {}) {
    this.els = els;
    this.loadStatuses = loadStatuses; // (statuses) => Promise: hold the server's orders of them
    this.loading = false; // reading a filter's orders from the server
    this.loadedAt = -Infinity; // performance.now() of the last read's end
    this.recheck = null; // a timer: look again once the gap since the last read has passed
    this.store = store;
    this.book = store.orders;
    this.openOrder = openOrder;
    this.confirm = confirm;
    this.toast = toast;
    // The search, as the page's address says it (a shared link, a reload).
    this.search = searchFromLocation(window.location.search, Number(els.search.maxLength) > 0 ? els.search.maxLength : 32);
    this.filter = FILTERS.find((f) => f.key === this.search.stage) ?? FILTERS[0];
    this.found = null; // the server's answer: {key, ids: Set, more}, or null
    this.searching = null; // the key of the search the server is asked now
    this.searchTimer = null;
    this.group = null; // the failure group narrowing the view: {key, step, reason, ids: Set, count}
    this.groups = []; // the server's failure groups (GET /api/failures), under Failed
    this.groupsTimer = null;
    this.view = [];
    this.viewKey = null; // what `view` was built from
    this.pool = [];
    this.filterButtons = new Map();
    this.rowHeight = DEFAULT_ROW_HEIGHT;
    this.stats = { renders: 0, rowWrites: 0, lastRenderMs: 0, maxRenderMs: 0, totalRenderMs: 0 };
    this.onChange = null; // set by the app: schedule a frame

    for (const f of FILTERS) {
      const count = h('span', { class: 'seg-count', text: '0' });
      const button = h('button', { type: 'button', class: 'seg', dataset: { filter: f.key }, 'aria-pressed': String(f === this.filter) },
        h('span', { text: f.label }), count);
      if (f.stages) button.title = orderStageStyle(f.key).title;
      button.addEventListener('click', () => this.setFilter(f));
      els.filters.append(button);
      this.filterButtons.set(f.key, { button, count });
    }
    els.search.value = this.search.q;
    if (els.since) els.since.value = this.search.from;
    if (els.until) els.until.value = this.search.to;
    els.search.addEventListener('input', () => this._searchChanged({ q: els.search.value }, SEARCH_PAUSE_MS));
    for (const [el, key] of [[els.since, 'from'], [els.until, 'to']]) {
      el?.addEventListener('change', () => this._searchChanged({ [key]: el.value }, 0));
    }
    els.clear?.addEventListener('click', () => {
      els.search.value = '';
      if (els.since) els.since.value = '';
      if (els.until) els.until.value = '';
      this._searchChanged({ q: '', from: '', to: '' }, 0);
    });
    els.search.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter') return;
      const q = els.search.value.trim();
      if (!q) return;
      // The timeline takes the focus (its Close button): without this, the same Enter
      // would go on to press that button and close it again at once.
      event.preventDefault();
      if (this.book.get(q) || ORDER_ID.test(q)) openOrder(q); // not held: the server answers
      else if (this.view?.length === 1) openOrder(this.view[0].id);
      else this.searchServer();
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
    els.groups.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-group]');
      if (!button) return;
      const group = this.groups.find((g) => groupKey(g) === button.dataset.group);
      this.group = !group || this.group?.key === groupKey(group) ? null : {
        key: groupKey(group), step: group.step, reason: group.reason, ids: new Set(group.orders), count: group.count,
      };
      this.viewKey = null;
      this._drawGroups();
      this.onChange?.();
    });
    els.bulkRetry.addEventListener('click', () => this.bulk('retry'));
    els.bulkCancel.addEventListener('click', () => this.bulk('cancel'));
    const narrow = window.matchMedia?.('(max-width: 700px)');
    narrow?.addEventListener?.('change', () => this._measure());
    this._measure();
    // A search from the address: its stage shows (triage under Failed), and the server is
    // asked once the page has its first snapshot (and its token, if the server has one).
    this.searchOnSnapshot = isActive(this.search);
    if (this.filter !== FILTERS[0]) this.setFilter(this.filter);
  }

  /** The row height the stylesheet gives (taller rows on narrow screens). */
  _measure() {
    const value = parseFloat(getComputedStyle(this.els.body).getPropertyValue('--row'));
    this.rowHeight = Number.isFinite(value) && value > 0 ? value : DEFAULT_ROW_HEIGHT;
    for (const row of this.pool) row.id = null; // reposition every row
    this.onChange?.();
  }

  setFilter(filter) {
    this.filter = filter;
    this._searchChanged({ stage: filter.key }, 0);
    this.group = null;
    this.viewKey = null;
    this.els.body.scrollTop = 0;
    for (const [key, { button }] of this.filterButtons) button.setAttribute('aria-pressed', String(key === filter.key));
    this.els.triage.hidden = filter.key !== 'failed';
    if (filter.key === 'failed') this.refreshGroups(0);
    this.loadedAt = -Infinity; // a new filter reads its orders at once
    this.onChange?.();
  }

  /** The server's counts, or (before its first numbers) the page's own. */
  counts() {
    return serverCounts(this.store.stats) ?? this.book.countByStage();
  }

  /** Under a filter, read the orders of its stage the page lacks (the server counts more of
   *  them than the page holds), at most every RELOAD_GAP_MS. */
  _holdFiltered(server, held) {
    const key = this.filter.key;
    if (this.filter.stages === null || !this.loadStatuses || this.loading) return;
    if (held[key] >= server[key]) return;
    const wait = this.loadedAt + RELOAD_GAP_MS - performance.now();
    if (wait > 0) {
      // Too soon after the last read: look again then, whether or not the counts change.
      this.recheck ??= setTimeout(() => {
        this.recheck = null;
        this._countsKey = null;
        this.onChange?.();
      }, wait);
      return;
    }
    this.loading = true;
    this.loadStatuses(STAGE_STATUSES[key])
      .catch((err) => this.toast(`Could not read the ${key} orders: ${err.message}`, 'bad'))
      .finally(() => {
        this.loading = false;
        this.loadedAt = performance.now();
        this.viewKey = null;
        this._countsKey = null;
        this.onChange?.();
      });
  }

  // ------------------------------------------------------------------ the search

  /** Part of the search changed: the address follows, the view is rebuilt, and (when it
   *  asks for anything) the server is asked after `pause` ms. */
  _searchChanged(change, pause) {
    Object.assign(this.search, change);
    const address = `${window.location.pathname}${searchToLocation(this.search)}${window.location.hash}`;
    if (address !== `${window.location.pathname}${window.location.search}${window.location.hash}`) {
      window.history.replaceState(window.history.state, '', address);
    }
    this.viewKey = null;
    this.els.body.scrollTop = 0;
    clearTimeout(this.searchTimer);
    this.searchTimer = null;
    if (!isActive(this.search)) this.found = null;
    else if (this.store.lastSeq === null) this.searchOnSnapshot = true; // not connected yet
    else this.searchTimer = setTimeout(() => this.searchServer(), pause);
    this.onChange?.();
  }

  /** Ask the server for the orders the search matches (its memory and its journal, beyond
   *  those the page holds) and hold them; the view shows them with the held matches. */
  async searchServer() {
    clearTimeout(this.searchTimer);
    this.searchTimer = null;
    if (!isActive(this.search)) return;
    const query = apiQuery(this.search, SEARCH_LIMIT);
    this.searching = query;
    this.onChange?.();
    try {
      const data = await api(`/api/orders?${query}`);
      if (this.searching !== query) return; // the search changed meanwhile
      const seq = this.store.lastSeq ?? 0;
      for (const order of data.orders) this.book.upsert(order, seq);
      this.store.mark('orders');
      this.found = { key: query, ids: new Set(data.orders.map((o) => o.id)), more: Boolean(data.next_cursor) };
    } catch (err) {
      if (this.searching === query) this.toast(`Search failed: ${err.message}`, 'bad');
    } finally {
      if (this.searching === query) this.searching = null;
      this.viewKey = null;
      this._countsKey = null;
      this.onChange?.();
    }
  }

  /** The server's answer to the search as it is now (null while it is asked, or none). */
  _answer() {
    if (!this.found || !isActive(this.search)) return null;
    return this.found.key === apiQuery(this.search, SEARCH_LIMIT) ? this.found : null;
  }

  /** Re-read the failure groups within `ms` (while the Failed filter shows them). */
  refreshGroups(ms = GROUPS_REFRESH_MS) {
    if (this.filter.key !== 'failed' || this.groupsTimer) return;
    this.groupsTimer = setTimeout(async () => {
      this.groupsTimer = null;
      try {
        const data = await api('/api/failures');
        this.groups = data.groups;
        if (this.group) {
          const fresh = this.groups.find((g) => groupKey(g) === this.group.key);
          this.group = fresh ? { ...this.group, ids: new Set(fresh.orders), count: fresh.count } : null;
          this.viewKey = null;
        }
        this._drawGroups();
        this.onChange?.();
      } catch (err) {
        this.toast(`Could not read the failures: ${err.message}`, 'bad');
      }
    }, ms);
  }

  /** An order event arrived: failures may have changed. */
  onEvent(ev) {
    if (ev.type === 'order_failed' || ev.type === 'order_retried') this.refreshGroups();
  }

  _drawGroups() {
    const buttons = this.groups.map((g) => h('button', {
      type: 'button', class: 'fgroup', dataset: { group: groupKey(g), step: g.step },
      'aria-pressed': String(this.group?.key === groupKey(g)), title: `${g.step}: ${g.example}`,
    }, h('span', { class: 'fgroup-step', text: g.step }), h('span', { class: 'fgroup-reason', text: g.reason }),
    h('b', { class: 'fgroup-count num', text: fmtInt(g.count) })));
    if (!buttons.length) buttons.push(h('span', { class: 'muted small', text: 'No failed orders in the server’s memory.' }));
    this.els.groups.replaceChildren(...buttons);
  }

  /** What a bulk action would act on: failed orders to retry, unfinished ones to cancel. */
  bulkTargets() {
    if (this.group) return { retry: [...this.group.ids], cancel: [], scope: 'group' };
    const retry = [];
    const cancel = [];
    for (let i = 0; i < this.length; i++) {
      const rec = this.at(i);
      if (rec.status === 'failed') retry.push(rec.id);
      else if (!TERMINAL.has(rec.status)) cancel.push(rec.id);
    }
    return { retry, cancel, scope: 'view' };
  }

  async bulk(command) {
    const targets = this.bulkTargets();
    const ids = targets[command];
    if (!ids.length) return;
    const what = targets.scope === 'group'
      ? `the ${plural(ids.length, 'failed order')} of ${this.group.step} · ${this.group.reason}`
      : `the ${plural(ids.length, command === 'retry' ? 'failed order' : 'unfinished order')} shown`;
    const ok = await this.confirm?.ask({
      title: command === 'retry' ? `Retry ${plural(ids.length, 'order')}?` : `Cancel ${plural(ids.length, 'order')}?`,
      message: command === 'retry'
        ? `Each of ${what} runs again from the step that failed; the steps that succeeded are kept.`
        : `Each of ${what} stops: its unfinished steps are cancelled. This cannot be undone.`,
      confirm: command === 'retry' ? `Retry ${plural(ids.length, 'order')}` : `Cancel ${plural(ids.length, 'order')}`,
      tone: command === 'retry' ? 'primary' : 'danger',
    });
    if (!ok) return;
    const button = command === 'retry' ? this.els.bulkRetry : this.els.bulkCancel;
    button.disabled = true;
    try {
      const reply = await api(`/api/orders/${command}`, { method: 'POST', body: { ids } });
      const done = reply[command === 'retry' ? 'retried' : 'cancelled'];
      const skipped = reply.skipped.length ? `; ${fmtInt(reply.skipped.length)} skipped (${reply.skipped[0].reason})` : '';
      this.toast(`${command === 'retry' ? 'Retried' : 'Cancelled'} ${plural(done.length, 'order')}${skipped}`, done.length ? 'good' : 'bad');
      this.group = null;
      this.refreshGroups(0);
    } catch (err) {
      this.toast(`Not ${command === 'retry' ? 'retried' : 'cancelled'}: ${err.message}`, 'bad');
    } finally {
      button.disabled = false;
      this.viewKey = null;
      this.onChange?.();
    }
  }

  _drawBulk(missing = 0) {
    // Only a narrowed set (a filter, a search, a failure group) can be acted on at once.
    const narrowed = this.group !== null || this.filter.stages !== null || isActive(this.search);
    if (!narrowed) {
      this.els.bulk.hidden = true;
      return;
    }
    const { retry, cancel, scope } = this.bulkTargets();
    this.els.bulk.hidden = !retry.length && !cancel.length;
    if (this.els.bulk.hidden) return;
    // A filter the page does not hold every order of yet acts on nothing until it does:
    // "Retry 55 failed orders" beside a count of 60 would be a lie either way.
    const partial = scope === 'view' && missing > 0;
    setText(this.els.bulkWhat, scope === 'group'
      ? `${this.group.step} · ${plural(this.group.count, 'failed order')} in this group`
      : partial ? `${plural(this.length, 'order')} here, ${fmtInt(missing)} more on the server${this.loading ? ': reading them…' : ''}`
        : `${plural(this.length, 'order')} shown`);
    this.els.bulkRetry.hidden = !retry.length;
    this.els.bulkCancel.hidden = !cancel.length;
    this.els.bulkRetry.disabled = partial;
    this.els.bulkCancel.disabled = partial;
    setText(this.els.bulkRetry, `Retry ${plural(retry.length, 'failed order')}…`);
    setText(this.els.bulkCancel, `Cancel ${plural(cancel.length, 'unfinished order')}…`);
  }

  // ------------------------------------------------------------------ the view

  _rebuildView() {
    const b = this.book;
    // Without a filter or a query the view is the book's own list, read back to front.
    const searching = isActive(this.search);
    const filtered = this.filter.stages !== null || searching || this.group !== null;
    const answer = this._answer();
    // Stage changes move orders between filters; any change may matter to a search (an
    // order's customer arrives after its id).
    const key = filtered
      ? `${this.filter.key}|${searchToLocation(this.search)}|${answer?.key ?? ''}|${this.group?.key ?? ''}|${b.structureVersion}|${b.statusVersion}|${searching ? b.changeVersion : ''}`
      : `all|${b.structureVersion}`;
    if (key === this.viewKey) return false;
    const anchor = this._anchor();
    this.viewKey = key;
    if (!filtered) this.view = null;
    else {
      const search = this.search;
      const stages = this.filter.stages;
      const ids = this.group?.ids;
      const out = [];
      const list = b.list;
      for (let i = list.length - 1; i >= 0; i--) {
        const rec = list[i];
        if (stages && !stages.has(rec.stage)) continue;
        if (ids && !ids.has(rec.id)) continue;
        if (searching && !answer?.ids.has(rec.id) && !matchesHeld(rec, search)) continue;
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
    if (body.scrollTop < this.rowHeight) return null;
    const index = Math.floor(body.scrollTop / this.rowHeight);
    const rec = this.at(index);
    return rec ? { rec, offset: body.scrollTop - index * this.rowHeight } : null;
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
      this.els.spacer.style.height = `${this.length * this.rowHeight}px`;
      this.els.body.scrollTop = index * this.rowHeight + anchor.offset;
    }
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
        retries: h('span', { class: 'cell c-retries num', role: 'cell' }),
        worker: h('span', { class: 'cell c-worker mono', role: 'cell' }),
        error: h('span', { class: 'cell c-error', role: 'cell' }),
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
    row.el.dataset.stage = rec.stage;
    setText(row.cells.id, rec.id);
    row.cells.id.title = rec.number ? `#${rec.number}` : '';
    setText(row.cells.customer, rec.customer ?? '…');
    setClass(row.cells.customer, rec.customer === null || rec.customer === undefined ? 'cell c-customer muted' : 'cell c-customer');
    const st = orderStageStyle(rec.stage);
    setText(row.badge, `${st.glyph} ${st.label}`);
    setClass(row.badge, `badge ${st.cls}`);
    let worker = null;
    rec.steps.forEach((step, i) => {
      const task = rec.tasks[step] || { status: 'pending', attempts: 0 };
      const ts = taskState(task.status);
      const chip = this._chip(row, i);
      setClass(chip.el, `chip chip-2 ${ts.cls}`);
      chip.el.dataset.step = step;
      setText(chip.glyph, ts.glyph);
      setText(chip.name, step);
      setText(chip.state, ts.label);
      const extra = [];
      if (task.attempts > 1) extra.push(`×${task.attempts}`);
      if (task.moves) extra.push('⇄');
      setText(chip.extra, extra.join(' '));
      chip.el.title = `${step}${task.compensates ? ` (undoes ${task.compensates})` : ''}: ${ts.label}${task.attempts ? `, attempt ${task.attempts}` : ''}${task.worker ? ` on ${task.worker}` : ''}${task.moves ? `, moved ${task.moves}×` : ''}`;
      if (task.worker && task.status !== 'pending') worker = task.worker;
    });
    for (let i = rec.steps.length; i < row.chips.length; i++) row.chips[i].el.remove();
    row.chips.length = Math.min(row.chips.length, rec.steps.length);
    const retries = retriesOf(rec);
    setText(row.cells.retries, retries ? fmtInt(retries) : '–');
    setClass(row.cells.retries, retries ? 'cell c-retries num hot' : 'cell c-retries num');
    row.cells.retries.title = retries ? `${plural(retries, 'failed attempt')} retried` : 'no retries';
    setText(row.cells.worker, worker ?? '–');
    const error = orderError(rec);
    setText(row.cells.error, error ? `${error.step}: ${error.error}` : '');
    row.cells.error.title = error ? `${error.step}: ${error.error} (click the row for the timeline)` : '';
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

  /** The line beside the filters: how many rows are shown of how many the server counts. */
  _countText(total, server, held) {
    const q = this.search.q.trim();
    if (isActive(this.search)) {
      const answer = this._answer();
      if (!answer) {
        if (total === 0 && q && ORDER_ID.test(q) && !this.book.get(q)) return 'not held here: Enter opens it';
        return `${fmtInt(total)} held here match; searching the server…`;
      }
      return `${plural(total, 'order')} found${answer.more ? ` (the server's newest ${fmtInt(SEARCH_LIMIT)} and those held here)` : ''}`;
    }
    if (this.group) return `${fmtInt(total)} of ${plural(held.all, 'order')} held here`;
    const counted = server[this.filter.key];
    if (total >= counted) return plural(total, 'order');
    const why = this.loading ? 'reading the rest from the server…'
      : this.filter.stages === null ? 'the newest' : `the page holds at most ${fmtInt(this.store.limits?.orders)}`;
    return `${fmtInt(total)} of ${plural(counted, 'order')} (${why})`;
  }

  /** What an empty table says: what was searched and where, never "no orders yet" while the
   *  server counts some. */
  _emptyText(server) {
    if (isActive(this.search)) {
      const what = describeSearch(this.search, this.filter.label);
      return this._answer()
        ? `No order found for ${what}. Searched the server (its memory and journal) and the orders held here.`
        : `None held here for ${what}. Searching the server…`;
    }
    if (server.all > 0 && this.filter.stages !== null) {
      return `No ${this.filter.label.toLowerCase()} orders held here${this.loading ? ' yet: reading them from the server…' : '.'}`;
    }
    if (server.all > 0) return `No orders held here yet (the server counts ${fmtInt(server.all)}).`;
    return 'No orders yet. Submit one above, or a batch of demo orders.';
  }

  /** Draw the rows in view. `tick` changes once a second so active rows' ages move. */
  render(tick) {
    const started = performance.now();
    if (this.searchOnSnapshot && this.store.lastSeq !== null && this.store.lastSeq !== undefined) {
      this.searchOnSnapshot = false;
      this.searchServer();
    }
    const viewChanged = this._rebuildView();
    const body = this.els.body;
    const rowHeight = this.rowHeight;
    const total = this.length;
    const height = `${total * rowHeight}px`;
    if (this.els.spacer.style.height !== height) this.els.spacer.style.height = height;
    const first = Math.max(0, Math.floor(body.scrollTop / rowHeight) - OVERSCAN);
    const visible = Math.ceil(body.clientHeight / rowHeight) + 2 * OVERSCAN;
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
      const top = `translateY(${(first + i) * rowHeight}px)`;
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
    const server = this.counts();
    const countsKey = `${this.book.structureVersion}|${this.book.statusVersion}|${total}|${searchToLocation(this.search)}|${this._answer()?.key}|${Object.values(server).join(',')}|${this.loading}`;
    if (viewChanged || countsKey !== this._countsKey) {
      this._countsKey = countsKey;
      const held = this.book.countByStage();
      // The server's counts: the same numbers as the tiles and /api/stats.
      for (const [key, { count: el }] of this.filterButtons) setText(el, fmtInt(server[key]));
      setText(this.els.count, this._countText(total, server, held));
      setText(this.els.empty, this._emptyText(server));
      this.els.empty.hidden = total > 0;
      const missing = this.filter.stages !== null && !isActive(this.search) && !this.group
        ? Math.max(0, server[this.filter.key] - held[this.filter.key]) : 0;
      this._drawBulk(missing);
      this._holdFiltered(server, held);
    }
    const ms = performance.now() - started;
    const s = this.stats;
    s.renders++;
    s.lastRenderMs = ms;
    s.totalRenderMs += ms;
    if (ms > s.maxRenderMs) s.maxRenderMs = ms;
  }
}

function groupKey(group) {
  return `${group.step}\u0000${group.reason}`;
}
