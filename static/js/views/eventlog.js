// The live log of failures, retries, reassignments and worker changes, newest first,
// filterable by kind and text. New entries are prepended; the list keeps MAX_ROWS.

import { fmtClock, h } from '../dom.js';
import { EVENT_LABEL, eventTone, LOG_GROUP_OF, LOG_GROUPS } from '../states.js';

const MAX_ROWS = 200;

/** The gist of an event, most telling part first; the full message is the item's title. */
export function summary(ev) {
  const order = ev.order_id ? h('span', { class: 'log-order mono', text: ev.order_id }) : null;
  const step = ev.step ? ` ${ev.step}` : '';
  switch (ev.type) {
    case 'task_reassigned':
      return [order, `${step}: ${ev.from_worker} → ${ev.worker_id ?? 'next free slot'}`, ev.reason ? ` (${ev.reason})` : ''];
    case 'task_failed':
      return [order, `${step} #${ev.attempt} on ${ev.worker_id}: ${ev.error ?? 'failed'}`];
    case 'task_retrying':
      return [order, `${step}: attempt ${ev.attempt} in ${ev.delay !== undefined ? `${Math.round(ev.delay * 1000)} ms` : 'a moment'}`];
    case 'order_failed':
      return [order, `: ${ev.message.replace(/^order \S+ failed: /, '')}`];
    case 'result_rejected':
      return [order, `${step}: late result from ${ev.worker_id} ignored`];
    default:
      return [ev.message];
  }
}

export class EventLog {
  /** els: {list, groups, search, empty}; openOrder(id) */
  constructor(els, openOrder) {
    this.els = els;
    this.enabled = new Set(Object.keys(LOG_GROUPS));
    this.query = '';
    this.logRef = null;
    this.topSeq = -1;
    this.dirtyFilter = true;
    for (const [key, group] of Object.entries(LOG_GROUPS)) {
      const button = h('button', { type: 'button', class: `seg seg-${key}`, 'aria-pressed': 'true', dataset: { group: key }, title: group.title, text: group.label });
      button.addEventListener('click', () => {
        if (this.enabled.has(key)) this.enabled.delete(key);
        else this.enabled.add(key);
        button.setAttribute('aria-pressed', String(this.enabled.has(key)));
        this.dirtyFilter = true;
        this.onChange?.();
      });
      els.groups.append(button);
    }
    els.search.addEventListener('input', () => {
      this.query = els.search.value.trim().toLowerCase();
      this.dirtyFilter = true;
      this.onChange?.();
    });
    els.list.addEventListener('click', (event) => {
      const item = event.target.closest('li[data-order]');
      if (item) openOrder(item.dataset.order);
    });
  }

  _matches(ev) {
    if (!this.enabled.has(LOG_GROUP_OF[ev.type])) return false;
    if (!this.query) return true;
    return `${ev.message} ${ev.order_id || ''} ${ev.worker_id || ''} ${ev.type}`.toLowerCase().includes(this.query);
  }

  _item(ev) {
    const tone = eventTone(ev.type);
    return h('li', { class: `log-item tone-${tone}`, title: ev.message, dataset: ev.order_id ? { type: ev.type, order: ev.order_id } : { type: ev.type } },
      h('span', { class: 'log-time num', text: fmtClock(ev.ts).slice(0, 8) }),
      h('span', { class: `ev-badge tone-${tone}`, text: EVENT_LABEL[ev.type] || ev.type }),
      h('span', { class: 'log-message' }, ...summary(ev)));
  }

  render(log) {
    const list = this.els.list;
    if (this.dirtyFilter || this.logRef !== log) {
      this.dirtyFilter = false;
      this.logRef = log;
      const items = [];
      for (let i = log.length - 1; i >= 0 && items.length < MAX_ROWS; i--) {
        if (this._matches(log[i])) items.push(this._item(log[i]));
      }
      list.replaceChildren(...items);
    } else {
      const fresh = [];
      for (let i = log.length - 1; i >= 0 && log[i].seq > this.topSeq && fresh.length < MAX_ROWS; i--) {
        if (this._matches(log[i])) fresh.push(this._item(log[i]));
      }
      if (fresh.length) list.prepend(...fresh);
      while (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
    }
    this.topSeq = log.length ? log[log.length - 1].seq : -1;
    this.els.empty.hidden = list.childElementCount > 0;
  }
}
