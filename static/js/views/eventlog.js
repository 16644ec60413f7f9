// The live log of failures, retries, moves, worker changes, restarts and operator actions,
// newest first, filterable by kind and text.
//
// Incidents stand out: a worker's death, a drain and a server restart are one entry each,
// with the moves (or recoveries) they caused folded inside it (events whose `cause` is the
// incident's seq) and counted on it, so a death is never buried under the moves it caused.
// The latest deaths and restarts are also pinned above the log, whatever the filters, until
// dismissed. A click on an entry shows its whole text; a click on its order opens the order.

import { fmtClock, fmtInt, h, plural } from '../dom.js';
import { EVENT_LABEL, eventTone, INCIDENT_TYPES, LOG_GROUP_OF, LOG_GROUPS, PINNED_TYPES } from '../states.js';

const MAX_ROWS = 200;
const MAX_PINNED = 3;
const PINNED_SECONDS = 30 * 60; // incidents older than this are no longer pinned
const MIN_RENDER_MS = 200; // a flood of events redraws the log at most this often

const orderLink = (id) => h('button', { type: 'button', class: 'log-order mono', dataset: { open: id }, text: id });

/** The gist of an event, most telling part first; the full message is shown on a click. */
export function summary(ev) {
  const order = ev.order_id ? orderLink(ev.order_id) : null;
  const step = ev.step ? ` ${ev.step}` : '';
  switch (ev.type) {
    case 'task_reassigned':
      return [order, `${step}: ${ev.from_worker} → ${ev.worker_id ?? 'next free slot'}`, ev.reason ? ` (${ev.reason === 'drain' ? 'drained' : ev.reason})` : ''];
    case 'task_failed':
      return [order, `${step} #${ev.attempt} on ${ev.worker_id}: ${ev.error ?? 'failed'}`];
    case 'task_retrying':
      return [order, `${step}: attempt ${ev.attempt} in ${ev.delay !== undefined ? `${Math.round(ev.delay * 1000)} ms` : 'a moment'}`];
    case 'order_failed':
      return [order, `: ${ev.message.replace(/^order \S+ failed: /, '')}`];
    case 'result_rejected':
      return [order, `${step}: late result from ${ev.worker_id} ignored`];
    case 'task_recovered':
      return [order, `${step}: queued again after the restart`];
    default:
      return order ? [order, ` ${ev.message}`] : [ev.message];
  }
}

/** An incident's headline: what happened and how much it moved (`children`: its moves). */
export function incidentText(ev, children) {
  const moved = children.filter((c) => c.type === 'task_reassigned').length;
  switch (ev.type) {
    case 'worker_dead':
      return `${ev.worker_id} died: ${plural(moved, 'task')} moved`;
    case 'worker_draining':
      return `${ev.worker_id} drained: ${plural(moved, 'queued task')} moved`;
    case 'server_restarted':
      return `server restarted: ${plural(ev.orders ?? 0, 'order')} recovered, ${plural(ev.steps ?? children.length, 'step')} to run again`;
    default:
      return ev.message;
  }
}

/**
 * The log's entries, newest first: incidents with the events they caused inside them, the
 * rest on their own. `keep(ev)` says which stand-alone events to show; incidents show
 * whatever it says of their children.
 */
export function entries(log, keep, limit = MAX_ROWS) {
  const incidents = new Map();
  for (const ev of log) if (INCIDENT_TYPES.has(ev.type)) incidents.set(ev.seq, { ev, children: [] });
  const out = [];
  for (const ev of log) {
    const parent = ev.cause !== undefined ? incidents.get(ev.cause) : undefined;
    if (parent) parent.children.push(ev);
  }
  for (let i = log.length - 1; i >= 0 && out.length < limit; i--) {
    const ev = log[i];
    if (ev.cause !== undefined && incidents.has(ev.cause)) continue; // inside its incident
    const incident = incidents.get(ev.seq);
    if (incident) {
      if (keep(ev) || incident.children.some(keep)) out.push(incident);
    } else if (keep(ev)) out.push({ ev, children: null });
  }
  return out;
}

export class EventLog {
  /** els: {list, groups, search, empty, incidents}; openOrder(id); now(): server time (s) */
  constructor(els, openOrder, now = () => Date.now() / 1000) {
    this.els = els;
    this.now = now;
    this.enabled = new Set(Object.keys(LOG_GROUPS));
    this.query = '';
    this.open = new Set(); // seqs of entries shown in full (or with their moves listed)
    this.dismissed = new Set(); // seqs of pinned incidents dismissed
    this.lastRender = 0;
    this.timer = null;
    this.onChange = null;
    for (const [key, group] of Object.entries(LOG_GROUPS)) {
      const button = h('button', { type: 'button', class: `seg seg-${key}`, 'aria-pressed': 'true', dataset: { group: key }, title: group.title, text: group.label });
      button.addEventListener('click', () => {
        if (this.enabled.has(key)) this.enabled.delete(key);
        else this.enabled.add(key);
        button.setAttribute('aria-pressed', String(this.enabled.has(key)));
        this._changed();
      });
      els.groups.append(button);
    }
    els.search.addEventListener('input', () => {
      this.query = els.search.value.trim().toLowerCase();
      this._changed();
    });
    const onClick = (event) => {
      const opener = event.target.closest('[data-open]');
      if (opener) {
        openOrder(opener.dataset.open);
        return;
      }
      const dismiss = event.target.closest('[data-dismiss]');
      if (dismiss) {
        this.dismissed.add(Number(dismiss.dataset.dismiss));
        this._changed();
        return;
      }
      const item = event.target.closest('[data-seq]');
      if (!item) return;
      const seq = Number(item.dataset.seq);
      if (this.open.has(seq)) this.open.delete(seq);
      else this.open.add(seq);
      this._changed();
    };
    els.list.addEventListener('click', onClick);
    els.incidents.addEventListener('click', onClick);
  }

  _changed() {
    this.lastRender = 0; // the user asked: redraw on the next frame
    this.onChange?.();
  }

  _matches(ev) {
    if (!this.enabled.has(LOG_GROUP_OF[ev.type])) return false;
    if (!this.query) return true;
    return `${ev.message} ${ev.order_id || ''} ${ev.worker_id || ''} ${ev.type}`.toLowerCase().includes(this.query);
  }

  _child(ev) {
    return h('li', { class: 'log-child', dataset: { type: ev.type, seq: String(ev.seq) } },
      h('span', { class: 'log-message' }, ...summary(ev)));
  }

  _item({ ev, children }, pinned = false) {
    const tone = eventTone(ev.type);
    const open = this.open.has(ev.seq);
    const item = h('li', {
      class: `log-item tone-${tone}${children ? ' incident' : ''}${open ? ' open' : ''}`,
      title: open ? null : ev.message,
      dataset: { type: ev.type, seq: String(ev.seq), ...(ev.order_id ? { order: ev.order_id } : {}) },
      'aria-expanded': String(open),
    },
    h('span', { class: 'log-time num', text: fmtClock(ev.ts).slice(0, 8) }),
    h('span', { class: `ev-badge tone-${tone}`, text: EVENT_LABEL[ev.type] || ev.type }),
    children
      ? h('span', { class: 'log-message incident-text' },
        h('b', { class: 'incident-head', text: incidentText(ev, children) }),
        children.length ? h('span', { class: 'incident-more muted', text: open ? ' ▾' : ' ▸ show' }) : null)
      : h('span', { class: 'log-message' }, ...summary(ev)));
    if (pinned) item.append(h('button', { type: 'button', class: 'btn btn-sm incident-dismiss', dataset: { dismiss: String(ev.seq) }, title: 'Unpin (it stays in the log)', text: '✕' }));
    if (open) {
      item.append(h('div', { class: 'log-full', text: ev.message }));
      if (children?.length) {
        item.append(h('ol', { class: 'log-children', 'aria-label': `${fmtInt(children.length)} events it caused` },
          children.slice(0, MAX_ROWS).map((c) => this._child(c))));
      }
    }
    return item;
  }

  /** Redraw from `log` (ascending seq); at most every MIN_RENDER_MS unless the user acted.
   *  Returns false when it put the redraw off (it asks for a frame again). */
  render(log) {
    const since = performance.now() - this.lastRender;
    if (since < MIN_RENDER_MS) {
      if (!this.timer) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.onChange?.();
        }, MIN_RENDER_MS - since);
      }
      return false;
    }
    this.lastRender = performance.now();
    const shown = entries(log, (ev) => this._matches(ev));
    this.els.list.replaceChildren(...shown.map((entry) => this._item(entry)));
    this.els.empty.hidden = shown.length > 0;
    const oldest = this.now() - PINNED_SECONDS;
    const pinned = entries(log, (ev) => PINNED_TYPES.has(ev.type) && ev.ts >= oldest && !this.dismissed.has(ev.seq), MAX_PINNED)
      .filter((entry) => entry.children !== null);
    this.els.incidents.replaceChildren(...pinned.map((entry) => this._item(entry, true)));
    this.els.incidents.hidden = pinned.length === 0;
    return true;
  }
}
