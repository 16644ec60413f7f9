// Everything the page knows, fed by the Socket.IO messages (see dashboard/stream/realtime.py)
// and a few HTTP reads. Handlers only update this object and mark what changed; the views redraw
// from it at most once per animation frame.
//
// The server's numbers (how many orders and log events to keep, heartbeat settings, the
// workflows' steps) arrive with every snapshot; until the first one nothing is capped.

import { OrderBook } from './orders.js';
import { LOG_GROUP_OF } from './states.js';

const LOG_SLACK = 200; // trim the log in chunks, not on every event
// The chart's windows: the last 5 minutes by default, or the hour the server keeps.
export const CHART_WINDOWS = [{ key: '5m', label: '5 min', seconds: 300 }, { key: '1h', label: '1 hour', seconds: 3600 }];
export const CHART_SECONDS = CHART_WINDOWS[CHART_WINDOWS.length - 1].seconds; // kept in the series
const POINT_SECONDS = 0.95; // a stats message this soon after the newest point replaces it

/**
 * What a page missed while it was not live: `before` is what it knew when it lost the
 * server (Store._known), `snap` the snapshot it got back, `awaySeconds` how long it was gone.
 * Events, orders finished and failed, and the incidents opened meanwhile, all as the server
 * counts them.
 */
export function missedWhileAway(before, snap, awaySeconds) {
  const progress = snap.stats?.progress || {};
  const was = before.progress || {};
  const grew = (key) => Math.max(0, (progress[key] ?? 0) - (was[key] ?? 0));
  const events = snap.last_seq - before.lastSeq;
  return {
    seconds: awaySeconds,
    // A server that restarted without its journal numbers its events from 1 again.
    events: events >= 0 ? events : null,
    completed: grew('completed'),
    failed: grew('failed'),
    incidents: (snap.incidents || []).filter((i) => !before.incidentIds.has(i.id)),
  };
}

/**
 * Two absences in a row, the banner of the first not yet dismissed (a connection that drops
 * again right after it came back, on a busy server): the banner counts both, so what was
 * missed the first time is not lost from view by the second.
 */
export function combineMissed(earlier, later) {
  if (!earlier) return later;
  const seconds = earlier.seconds + later.seconds;
  if (later.silent) return { ...earlier, seconds };
  if (earlier.silent) return { ...later, seconds };
  const known = new Set(earlier.incidents.map((i) => i.id));
  return {
    seconds,
    events: earlier.events === null || later.events === null ? null : earlier.events + later.events,
    completed: earlier.completed + later.completed,
    failed: earlier.failed + later.failed,
    incidents: [...earlier.incidents, ...later.incidents.filter((i) => !known.has(i.id))],
  };
}

/** The chart's numbers from one `stats` (GET /api/stats): the same the tiles show. */
export function pointOf(stats) {
  const rates = stats.rates || {};
  return {
    orders: rates.orders_per_s ?? 0,
    steps: rates.steps_per_s ?? 0,
    failures: rates.failures_per_s ?? 0,
    queued: Store.queueDepth(stats),
  };
}

export class Store {
  constructor() {
    this.orders = new OrderBook();
    this.workers = [];
    this.ring = { arcs: [], shares: {} };
    this.stats = null;
    this.config = null; // {heartbeat_interval, heartbeat_timeout, max_retries}, from the snapshot
    this.limits = null; // {orders, orders_page, initial_orders, log_events, incidents}, from the snapshot
    this.chaos = null;
    this.app = null; // {name, chaos}: the app the server runs; whether the demo's knobs drive it
    // The server's incident records (deaths, drains, restarts, new leaders), newest first:
    // whole in every snapshot, the changed ones in `incidents` messages.
    this.incidents = [];
    // Liveness: when the page last heard from the server (performance.now() ms), and, while
    // it cannot hear it, since when (Date.now() ms), why, and what it knew then.
    this.lastHeardAt = performance.now();
    this.lost = null; // {at, reason, before, serverNow} while not live
    this.missed = null; // what the page missed while away (missedWhileAway), once back
    // [{name, steps: [{name, deps, retries, timeout, max_in_flight, rate, tags, ...}]}], as
    // GET /api/workflows lists them: the submit forms' choices and the timeline's DAG.
    this.workflowDetails = [];
    this.log = []; // notable events, ascending seq
    this.lastSeq = null;
    this.historyLoaded = false; // the first refresh after page load has run
    this.awaitingSnapshot = true; // until the first snapshot, and after a gap or a reconnect
    this.clockOffset = 0; // browser clock minus server clock, seconds (about)
    this.clockKnown = false; // the offset came from the server's own clock (stats.now)
    // The chart: server time (s), orders completed, steps succeeded and attempts failed per
    // second, tasks queued. The server's last hour (GET /api/history), then a point per
    // `workers` message (the newest replaced while younger than POINT_SECONDS).
    this.series = { t: [], orders: [], steps: [], failures: [], queued: [] };
    this.historyFetched = false;
    this.counters = { snapshots: 0, batches: 0, events: 0, gaps: 0, ignored: 0 };
    this.dirty = new Set();
    this.onOrderEvent = null; // (event) => void, for the open timeline
    this.onWorkersChanged = null; // () => void, a worker joined or left: re-read the ring
    this.onDirty = null; // () => void: something changed, a frame should be drawn
  }

  mark(...parts) {
    for (const part of parts) this.dirty.add(part);
    this.onDirty?.();
  }

  takeDirty() {
    const dirty = this.dirty;
    this.dirty = new Set();
    return dirty;
  }

  // ------------------------------------------------------------------ messages

  /** A snapshot replaces what the stream told us; held orders not in it may be stale. */
  applySnapshot(snap) {
    this.counters.snapshots++;
    this.lastSeq = snap.last_seq;
    this.awaitingSnapshot = false;
    this.config = snap.config;
    this.limits = snap.limits;
    this.orders.configure({ maxOrders: snap.limits.orders, workflows: snap.workflows });
    this.setStats(snap.stats);
    this.setWorkers(snap.workers);
    this.setRing(snap.ring);
    if (snap.chaos) this.chaos = snap.chaos;
    this.app = snap.app || null;
    this.incidents = snap.incidents || [];
    if (this.lost !== null) {
      this.missed = combineMissed(this.lost.earlier,
        missedWhileAway(this.lost.before, snap, (Date.now() - this.lost.at) / 1000));
      this.lost = null;
      this.mark('live');
    }
    this.server = snap.server || null; // which server leads (several on one database)
    this.workflowDetails = snap.workflow_details || [];
    const fresh = new Set();
    const initial = !this.historyLoaded;
    // Orders submitted while we were not listening are newer than the newest we held.
    const newestHeld = this.orders.newestNumber();
    for (const order of snap.orders || []) {
      this.orders.upsert(order, snap.last_seq, true);
      fresh.add(order.id);
    }
    const stale = this.orders.oldestUnfinishedNumberNotIn(fresh);
    const staleFrom = initial ? null : Math.min(newestHeld, stale ?? Infinity);
    this._mergeLog(snap.events || []);
    this._syncClock(snap.events || []);
    this.mark('orders', 'chaos', 'conn', 'workflows', 'log');
    return { staleFrom, initial };
  }

  /** An `incidents` message: the records that changed replace those of the same id. */
  applyIncidents(changed) {
    const byId = new Map(this.incidents.map((i) => [i.id, i]));
    for (const incident of changed) byId.set(incident.id, incident);
    const cap = this.limits?.incidents ?? Infinity;
    this.incidents = [...byId.values()].sort((a, b) => b.id - a.id).slice(0, cap);
    this.mark('log');
  }

  setChaos(chaos) {
    if (!chaos) return;
    this.chaos = chaos;
    this.mark('chaos');
  }

  // ------------------------------------------------------------------ liveness

  /** Any message from the server: it is alive, and so are the page's numbers. */
  heard(now = performance.now()) {
    this.lastHeardAt = now;
  }

  /** The page cannot hear the server (`reason`): its numbers stop at what was known, its
   *  clocks stop. Returns false when it already knew. */
  lose(reason, wallMs = Date.now()) {
    if (this.lost !== null) return false;
    const serverNow = this.serverNow();
    // A banner not yet dismissed is carried into the next one (combineMissed).
    this.lost = { at: wallMs, reason, before: this._known(), serverNow, earlier: this.missed };
    this.missed = null;
    this.mark('live', 'chart', 'orders');
    return true;
  }

  /** The server answered again without a snapshot in between (it was only silent). */
  regain() {
    if (this.lost === null) return;
    this.missed = combineMissed(this.lost.earlier,
      { seconds: (Date.now() - this.lost.at) / 1000, silent: true });
    this.lost = null;
    this.mark('live', 'chart', 'orders');
  }

  /** The operator closed the banner: the next one starts from nothing. */
  dismissMissed() {
    this.missed = null;
  }

  /** What the page knows now, to say later what it missed. */
  _known() {
    return {
      lastSeq: this.lastSeq ?? 0,
      progress: { ...(this.stats?.progress || {}) },
      incidentIds: new Set(this.incidents.map((i) => i.id)),
    };
  }

  /** One `events` message. Returns 'ok', 'ignored' (waiting for a snapshot) or 'gap'. */
  applyEvents(batch) {
    if (this.awaitingSnapshot || this.lastSeq === null) {
      this.counters.ignored += batch.length;
      return 'ignored';
    }
    this.counters.batches++;
    let workersChanged = false;
    for (const ev of batch) {
      if (ev.seq <= this.lastSeq) continue; // already in the snapshot
      if (ev.seq !== this.lastSeq + 1) {
        this.counters.gaps++;
        this.awaitingSnapshot = true;
        this.mark('conn');
        return 'gap';
      }
      this.lastSeq = ev.seq;
      this.counters.events++;
      if (this.orders.apply(ev)) this.mark('orders');
      if (LOG_GROUP_OF[ev.type]) {
        this.log.push(ev);
        this.mark('log');
      }
      if (ev.type.startsWith('worker_')) workersChanged = true;
      if (ev.order_id && this.onOrderEvent) this.onOrderEvent(ev);
    }
    const cap = this.limits.log_events;
    if (this.log.length > cap + LOG_SLACK) this.log.splice(0, this.log.length - cap);
    this._syncClock(batch);
    if (workersChanged && this.onWorkersChanged) this.onWorkersChanged();
    return 'ok';
  }

  setWorkers(workers) {
    this.workers = workers || [];
    this.mark('workers');
  }

  setRing(ring) {
    if (!ring) return;
    const signature = (r) => `${r.arcs.length}|${Object.entries(r.shares).map(([w, s]) => `${w}:${s.toFixed(4)}`).join(',')}`;
    if (signature(ring) !== signature(this.ring)) {
      this.ring = ring;
      this.mark('ring');
    }
  }

  setStats(stats) {
    if (!stats) return;
    this.stats = stats;
    // The server's clock comes with its numbers: ages and the chart use server time.
    if (typeof stats.now === 'number') {
      this.clockOffset = Date.now() / 1000 - stats.now;
      this.clockKnown = true;
    }
    this._sample(stats);
    this.mark('stats');
  }

  /** A workflow as the server describes it (its steps, their deps and policies), or null. */
  workflow(name) {
    return this.workflowDetails.find((w) => w.name === name) ?? null;
  }

  // ------------------------------------------------------------------ helpers

  _mergeLog(events) {
    const notable = events.filter((ev) => LOG_GROUP_OF[ev.type]);
    if (!notable.length) return;
    const first = notable[0].seq;
    this.log = this.log.filter((ev) => ev.seq < first).concat(notable);
    this.mark('log');
  }

  _syncClock(events) {
    if (!events.length || this.clockKnown) return;
    const newest = events[events.length - 1].ts;
    if (newest) this.clockOffset = Date.now() / 1000 - newest;
  }

  /** Server time now, estimated; while the server is lost, the time it was lost at (the
   *  page's clocks stop with its numbers). */
  serverNow() {
    if (this.lost !== null) return this.lost.serverNow;
    return Date.now() / 1000 - this.clockOffset;
  }

  /** Queue depth: tasks waiting for a worker, sitting in a worker's queue or backing off. */
  static queueDepth(stats) {
    const t = stats.tasks || {};
    return (t.ready || 0) + (t.assigned || 0) + (t.retry_wait || 0);
  }

  _sample(stats) {
    const now = this.serverNow();
    const point = pointOf(stats);
    const s = this.series;
    const newest = s.t.length - 1;
    if (newest >= 0 && now - s.t[newest] < POINT_SECONDS && s.live) {
      for (const key of Object.keys(point)) s[key][newest] = point[key];
    } else {
      s.t.push(now);
      for (const key of Object.keys(point)) s[key].push(point[key]);
    }
    s.live = true;
    this._trimSeries(now);
    this.mark('chart');
  }

  /** The server's history (GET /api/history, columns in server time): the points older
   *  than what this page sampled itself go in front. */
  loadHistory(history) {
    const s = this.series;
    const firstLive = s.t.length ? s.t[0] : Infinity;
    const older = [];
    (history.t || []).forEach((t, i) => { if (t < firstLive - 0.5) older.push(i); });
    const column = (name) => older.map((i) => history[name]?.[i] ?? 0);
    const queued = older.map((i) => (history.queued?.[i] ?? 0) + (history.retrying?.[i] ?? 0));
    this.series = {
      t: older.map((i) => history.t[i]).concat(s.t),
      orders: column('orders_per_s').concat(s.orders),
      steps: column('steps_per_s').concat(s.steps),
      failures: column('failures_per_s').concat(s.failures),
      queued: queued.concat(s.queued),
      live: s.live,
    };
    this.historyFetched = true;
    this._trimSeries(this.serverNow());
    this.mark('chart');
  }

  _trimSeries(now) {
    const s = this.series;
    let drop = 0;
    while (drop < s.t.length && s.t[drop] < now - CHART_SECONDS) drop++;
    if (!drop) return;
    for (const key of ['t', 'orders', 'steps', 'failures', 'queued']) s[key].splice(0, drop);
  }
}
