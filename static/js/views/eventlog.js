// The live log of failures, retries, moves, worker changes, restarts and operator actions,
// newest first, filterable by kind and text.
//
// Incidents stand out: a worker's death, a drain, a server restart or a new leader is one
// entry each, the server's own record of it (scheduler/runtime/incidents.py: it counts what
// the incident caused, keeps the first of those, and survives floods of events, reloads and
// restarts), with the events it caused (their `cause` is its id) folded inside it, so a
// death is never buried under the moves it caused. The latest deaths and restarts are also
// pinned above the log, whatever the filters, until dismissed. A click on an entry shows its
// whole text; a click on its order opens the order.

import { fmtClock, fmtInt, h, plural } from '../dom.js';
import { EVENT_LABEL, eventTone, LOG_GROUP_OF, LOG_GROUPS } from '../states.js';

const MAX_ROWS = 200;
const MAX_PINNED = 3;
const PINNED_SECONDS = 30 * 60; // incidents older than this are no longer pinned
const MIN_RENDER_MS = 200; // a flood of events redraws the log at most this often
// The event type that opens each kind of incident (its badge, tone and filter group).
export const INCIDENT_EVENT = {
  worker_dead: 'worker_dead',
  worker_drained: 'worker_draining',
  server_restarted: 'server_restarted',
  failover: 'server_restarted',
  alert: 'alert_raised',
  step_paused: 'step_paused',
  breaker_tripped: 'breaker_tripped',
  step_resumed: 'step_resumed',
  compensation_failed: 'order_compensation_failed',
};

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
      // Beyond a few a window, late results are counted in one event of no order.
      if (!order) return [`${plural(ev.count ?? 0, 'more late result')} from ${ev.worker_id} ignored (counted, not listed one by one)`];
      return [order, `${step}: late result from ${ev.worker_id} ignored`];
    case 'task_recovered':
      return [order, `${step}: queued again after the restart`];
    default:
      return order ? [order, ` ${ev.message}`] : [ev.message];
  }
}

/** What an empty log says: with a kind picked or text typed, that they hide the rest and how
 *  to see every kind again, never only that events "appear here". */
export function emptyLogText(only, query) {
  const typed = query ? ` matching “${query}”` : '';
  if (only) {
    const label = LOG_GROUPS[only].label;
    return `No ${label.toLowerCase()} in the log${typed}. Showing ${label} only: click ${label} again, or All, for every kind.`;
  }
  if (query) return `Nothing in the log matches “${query}”.`;
  return 'Failures, retries, moves, worker changes and operator actions appear here.';
}

/** An incident as the log shows it: an event-like head (its badge, tone, time, text). */
export function incidentEvent(incident) {
  return {
    seq: incident.id, ts: incident.ts, type: INCIDENT_EVENT[incident.kind] || 'server_restarted',
    worker_id: incident.worker, message: incident.message, order_id: incident.order ?? null,
  };
}

/**
 * The log's entries, newest first: the server's incidents, each with the events it caused
 * inside it, and the notable events that belong to none. `keep(ev)` says which events to
 * show; an incident shows when its own kind passes or something it caused does.
 * Entries are {ev, incident} (an incident, `ev` its head) or {ev, incident: null}.
 */
export function entries(log, keep, limit = MAX_ROWS, incidents = []) {
  const byId = new Map(incidents.map((i) => [i.id, i]));
  const shown = incidents
    .filter((i) => keep(incidentEvent(i)) || i.caused.some(keep))
    .sort((a, b) => b.id - a.id);
  const out = [];
  let next = 0; // the next incident to place, newest first
  for (let i = log.length - 1; i >= 0 && out.length < limit; i--) {
    const ev = log[i];
    while (next < shown.length && shown[next].id > ev.seq && out.length < limit) {
      out.push({ ev: incidentEvent(shown[next]), incident: shown[next] });
      next++;
    }
    if (byId.has(ev.seq) || (ev.cause !== undefined && byId.has(ev.cause))) continue;
    if (keep(ev)) out.push({ ev, incident: null });
  }
  for (; next < shown.length && out.length < limit; next++) {
    out.push({ ev: incidentEvent(shown[next]), incident: shown[next] });
  }
  return out;
}

export class EventLog {
  /** els: {list, groups, search, empty, incidents}; openOrder(id); now(): server time (s) */
  constructor(els, openOrder, now = () => Date.now() / 1000) {
    this.els = els;
    this.now = now;
    // The kind shown (a key of LOG_GROUPS), or null for every kind. A click on a kind shows
    // only that kind; a click on it again (or on All) shows every kind again.
    this.only = null;
    this.query = '';
    this.open = new Set(); // seqs of entries shown in full (or with their moves listed)
    this.dismissed = new Set(); // ids of pinned incidents dismissed
    this.lastRender = 0;
    this.timer = null;
    this.onChange = null;
    this.groupButtons = new Map();
    const groups = [['all', { label: 'All', title: 'Every kind of event' }], ...Object.entries(LOG_GROUPS)];
    for (const [key, group] of groups) {
      const button = h('button', { type: 'button', class: `seg seg-${key}`, 'aria-pressed': String(key === 'all'), dataset: { group: key }, title: group.title, text: group.label });
      button.addEventListener('click', () => this.show(key === 'all' || this.only === key ? null : key));
      this.groupButtons.set(key, button);
      els.groups.append(button);
    }
    els.search.addEventListener('input', () => {
      this.query = els.search.value.trim().toLowerCase();
      this._changed();
    });
    const onClick = (event) => {
      // An entry's kind (its badge) shows only that kind, as its button above does.
      const kind = event.target.closest('.ev-badge[data-group]');
      if (kind) {
        this.show(kind.dataset.group);
        return;
      }
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

  /** Show only the kind `only` (a key of LOG_GROUPS), or every kind (null). */
  show(only) {
    this.only = only;
    for (const [other, b] of this.groupButtons) b.setAttribute('aria-pressed', String(other === (this.only ?? 'all')));
    this._changed();
  }

  _changed() {
    this.lastRender = 0; // the user asked: redraw on the next frame
    this.onChange?.();
  }

  _matches(ev) {
    const group = LOG_GROUP_OF[ev.type];
    if (!group || (this.only !== null && group !== this.only)) return false;
    if (!this.query) return true;
    return `${ev.message} ${ev.order_id || ''} ${ev.worker_id || ''} ${ev.type}`.toLowerCase().includes(this.query);
  }

  _child(ev) {
    return h('li', { class: 'log-child', dataset: { type: ev.type, seq: String(ev.seq) } },
      h('span', { class: 'log-message' }, ...summary(ev)));
  }

  _item({ ev, incident }, pinned = false) {
    const tone = eventTone(ev.type);
    const open = this.open.has(ev.seq);
    const caused = incident?.caused ?? [];
    const item = h('li', {
      class: `log-item tone-${tone}${incident ? ' incident' : ''}${open ? ' open' : ''}`,
      title: open ? null : ev.message,
      dataset: { type: ev.type, seq: String(ev.seq), ...(incident ? { kind: incident.kind } : {}), ...(ev.order_id ? { order: ev.order_id } : {}) },
      'aria-expanded': String(open),
    },
    h('span', { class: 'log-time num', text: fmtClock(ev.ts).slice(0, 8) }),
    h('span', {
      class: `ev-badge tone-${tone}`, text: incident?.kind === 'failover' ? 'new leader' : (EVENT_LABEL[ev.type] || ev.type),
      ...(LOG_GROUP_OF[ev.type] ? { dataset: { group: LOG_GROUP_OF[ev.type] }, title: `Show only ${LOG_GROUPS[LOG_GROUP_OF[ev.type]].label.toLowerCase()}` } : {}),
    }),
    incident
      ? h('span', { class: 'log-message incident-text' },
        h('b', { class: 'incident-head', text: incident.title }),
        // An order's incident (a failed compensation) opens it: its view has the retry.
        incident.order ? [' ', orderLink(incident.order)] : null,
        caused.length ? h('span', { class: 'incident-more muted', text: open ? ' ▾' : ' ▸ show' }) : null)
      : h('span', { class: 'log-message' }, ...summary(ev)));
    if (pinned) item.append(h('button', { type: 'button', class: 'btn btn-sm incident-dismiss', dataset: { dismiss: String(ev.seq) }, title: 'Unpin (it stays in the log)', text: '✕' }));
    if (open) {
      item.append(h('div', { class: 'log-full', text: ev.message }));
      if (caused.length) {
        const more = incident.caused_total - caused.length;
        item.append(h('ol', { class: 'log-children', 'aria-label': `${fmtInt(incident.caused_total)} events it caused` },
          caused.map((c) => this._child(c)),
          more > 0 ? h('li', { class: 'log-child muted', text: `and ${plural(more, 'more')} (the server counted them; the first ${fmtInt(caused.length)} are listed)` }) : null));
      }
    }
    return item;
  }

  /** Redraw from `log` (ascending seq) and the server's `incidents` (newest first); at most
   *  every MIN_RENDER_MS unless the user acted. Returns false when it put the redraw off
   *  (it asks for a frame again). */
  render(log, incidents = []) {
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
    const shown = entries(log, (ev) => this._matches(ev), MAX_ROWS, incidents);
    this.els.list.replaceChildren(...shown.map((entry) => this._item(entry)));
    this.els.empty.hidden = shown.length > 0;
    if (!shown.length) this.els.empty.textContent = emptyLogText(this.only, this.query);
    const oldest = this.now() - PINNED_SECONDS;
    const pinned = incidents
      .filter((i) => i.pinned && i.ts >= oldest && !this.dismissed.has(i.id))
      .slice(0, MAX_PINNED);
    this.els.incidents.replaceChildren(...pinned.map((i) => this._item({ ev: incidentEvent(i), incident: i }, true)));
    this.els.incidents.hidden = pinned.length === 0;
    return true;
  }
}
