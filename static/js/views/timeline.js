// One order's timeline (GET /api/orders/<id>): its steps, and every event in order with
// workers, attempts, errors and reassignments. Refreshes while open as events arrive.

import { api } from '../api.js';
import { fmtClock, fmtDuration, fmtInt, h, setText } from '../dom.js';
import { EVENT_LABEL, eventTone, orderStatus, taskState, TERMINAL } from '../states.js';

const REFRESH_MS = 250;

export class Timeline {
  /** els: {root, title, body, close}; toast(message, tone) */
  constructor(els, toast) {
    this.els = els;
    this.toast = toast;
    this.orderId = null;
    this.timer = null;
    this.returnFocus = null;
    els.close.addEventListener('click', () => this.close());
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.orderId && !document.querySelector('dialog[open]')) this.close();
    });
  }

  async open(orderId) {
    if (this.orderId !== orderId) this.returnFocus = document.activeElement;
    this.orderId = orderId;
    this.els.root.hidden = false;
    this.els.root.dataset.order = orderId;
    setText(this.els.title, orderId);
    this.els.body.replaceChildren(h('p', { class: 'muted pad', text: 'Loading…' }));
    this.els.close.focus();
    await this.load();
  }

  close() {
    this.orderId = null;
    clearTimeout(this.timer);
    this.timer = null;
    this.els.root.hidden = true;
    delete this.els.root.dataset.order;
    this.returnFocus?.focus?.();
  }

  /** A stream event arrived; refresh soon if it is about the open order. */
  onEvent(ev) {
    if (ev.order_id !== this.orderId || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.load();
    }, REFRESH_MS);
  }

  async load() {
    const id = this.orderId;
    if (!id) return;
    let order;
    try {
      order = await api(`/api/orders/${encodeURIComponent(id)}`);
    } catch (err) {
      if (this.orderId !== id) return;
      this.els.body.replaceChildren(h('p', { class: 'pad error-text', text: err.status === 404 ? `No order ${id} on the server.` : err.message }));
      return;
    }
    if (this.orderId !== id) return; // closed or switched meanwhile
    const keepScroll = this.els.body.scrollTop;
    this.els.body.replaceChildren(this._summary(order), this._steps(order), this._events(order));
    this.els.body.scrollTop = keepScroll;
    this.els.root.dataset.status = order.status;
  }

  _summary(order) {
    const st = orderStatus(order.status);
    const items = order.data?.items || [];
    const total = items.reduce((sum, it) => sum + (Number(it.qty) || 0) * (Number(it.price) || 0), 0);
    const took = order.finished_at ? fmtDuration(order.finished_at - order.submitted_at) : 'not finished';
    const field = (label, ...value) => h('div', { class: 'kv' }, h('dt', { text: label }), h('dd', {}, ...value));
    const actions = h('div', { class: 'tl-actions' });
    if (!TERMINAL.has(order.status)) actions.append(this._action(order.id, 'cancel', 'Cancel order'));
    if (order.status === 'failed') actions.append(this._action(order.id, 'retry', 'Retry from the failed step'));
    return h('section', { class: 'tl-summary' },
      h('dl', { class: 'kv-grid' },
        field('Customer', h('span', { class: 'tl-customer', text: order.customer ?? '' })),
        field('Status', h('span', { class: `badge ${st.cls}`, text: `${st.glyph} ${st.label}` })),
        field('Workflow', order.workflow),
        field('Items', `${fmtInt(items.length)} line${items.length === 1 ? '' : 's'} · ${total.toFixed(2)}`),
        field('Submitted', fmtClock(order.submitted_at)),
        field('Took', took)),
      actions);
  }

  _action(id, action, label) {
    const button = h('button', { type: 'button', class: action === 'cancel' ? 'btn btn-danger btn-sm' : 'btn btn-sm', text: label });
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await api(`/api/orders/${encodeURIComponent(id)}/${action}`, { method: 'POST' });
        this.toast(`Order ${id}: ${action === 'cancel' ? 'cancelled' : 'retrying'}`, 'good');
        this.load();
      } catch (err) {
        this.toast(err.message, 'bad');
        button.disabled = false;
      }
    });
    return button;
  }

  _steps(order) {
    const rows = Object.entries(order.tasks || {}).map(([step, t]) => {
      const ts = taskState(t.status);
      return h('tr', {},
        h('td', {}, h('span', { class: `chip ${ts.cls}` }, h('span', { class: 'chip-glyph', text: ts.glyph }), h('span', { class: 'chip-name', text: step }), h('span', { class: 'chip-state', text: ts.label }))),
        h('td', { class: 'num', text: fmtInt(t.attempts) }),
        h('td', { class: 'mono', text: t.worker ?? '–' }),
        h('td', { class: 'num', text: t.reassignments ? fmtInt(t.reassignments) : '–' }),
        h('td', { class: 'tl-error', text: t.error ?? '' }));
    });
    return h('section', {},
      h('h3', { text: 'Steps' }),
      h('table', { class: 'tl-steps' },
        h('thead', {}, h('tr', {}, ...['Step', 'Attempts', 'Worker', 'Moved', 'Last error'].map((t) => h('th', { text: t })))),
        h('tbody', {}, rows)));
  }

  _events(order) {
    const events = order.events || [];
    const start = order.submitted_at || events[0]?.ts || 0;
    const list = h('ol', { class: 'tl-events' });
    for (const ev of events) {
      const where = [];
      if (ev.step) where.push(ev.step);
      if (ev.attempt) where.push(`attempt ${ev.attempt}`);
      if (ev.from_worker) where.push(`${ev.from_worker} → ${ev.worker_id ?? 'next free slot'}`);
      else if (ev.worker_id) where.push(ev.worker_id);
      if (ev.duration !== undefined && ev.duration !== null) where.push(fmtDuration(ev.duration));
      list.append(h('li', { class: `tl-event tone-${eventTone(ev.type)}`, dataset: { type: ev.type, seq: String(ev.seq) } },
        h('span', { class: 'tl-time num', title: fmtClock(ev.ts), text: `+${fmtDuration(ev.ts - start)}` }),
        h('span', { class: `ev-badge tone-${eventTone(ev.type)}`, text: EVENT_LABEL[ev.type] || ev.type }),
        h('span', { class: 'tl-where', text: where.join(' · ') }),
        h('span', { class: 'tl-message', text: ev.message })));
    }
    return h('section', {}, h('h3', { text: `Events (${fmtInt(events.length)})` }), list);
  }
}
