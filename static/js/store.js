// Everything the page knows, fed by the Socket.IO messages (see dashboard/realtime.py) and a
// few HTTP reads. Handlers only update this object and mark what changed; the views redraw
// from it at most once per animation frame.
//
// The server's numbers (how many orders and log events to keep, heartbeat settings, the
// workflows' steps) arrive with every snapshot; until the first one nothing is capped.

import { OrderBook } from './orders.js';
import { LOG_GROUP_OF } from './states.js';

const LOG_SLACK = 200; // trim the log in chunks, not on every event
export const CHART_SECONDS = 300; // the chart's window (the page says "last 5 minutes")

export class Store {
  constructor() {
    this.orders = new OrderBook();
    this.workers = [];
    this.ring = { arcs: [], shares: {} };
    this.stats = null;
    this.config = null; // {heartbeat_interval, heartbeat_timeout, max_retries}, from the snapshot
    this.limits = null; // {orders, orders_page, initial_orders, log_events}, from the snapshot
    this.chaos = null;
    // [{name, steps: [{name, deps, retries, timeout, max_in_flight, rate, tags, ...}]}], as
    // GET /api/workflows lists them: the submit forms' choices and the timeline's DAG.
    this.workflowDetails = [];
    this.log = []; // notable events, ascending seq
    this.lastSeq = null;
    this.historyLoaded = false; // the first refresh after page load has run
    this.awaitingSnapshot = true; // until the first snapshot, and after a gap or a reconnect
    this.clockOffset = 0; // browser clock minus server clock, seconds (about)
    this.series = { t: [], completed: [], queued: [] }; // the chart, one point per second
    this._lastSample = null;
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
    this.mark('orders', 'chaos', 'conn', 'workflows');
    return { staleFrom, initial };
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
    if (!events.length) return;
    const newest = events[events.length - 1].ts;
    if (newest) this.clockOffset = Date.now() / 1000 - newest;
  }

  /** Server time now, estimated. */
  serverNow() {
    return Date.now() / 1000 - this.clockOffset;
  }

  /** Queue depth: tasks waiting for a worker, sitting in a worker's queue or backing off. */
  static queueDepth(stats) {
    const t = stats.tasks || {};
    return (t.ready || 0) + (t.assigned || 0) + (t.retry_wait || 0);
  }

  _sample(stats) {
    const now = Date.now() / 1000;
    const completed = stats.orders?.completed ?? 0;
    const last = this._lastSample;
    if (last && now - last.t < 0.95) return;
    this._lastSample = { t: now, completed };
    if (!last) return;
    const rate = Math.max(0, (completed - last.completed) / (now - last.t));
    const s = this.series;
    s.t.push(now);
    s.completed.push(rate);
    s.queued.push(Store.queueDepth(stats));
    while (s.t.length && s.t[0] < now - CHART_SECONDS) {
      s.t.shift();
      s.completed.shift();
      s.queued.shift();
    }
    this.mark('chart');
  }
}
