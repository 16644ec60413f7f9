// Fills the order table from GET /api/orders (newest first, the largest page the server
// allows): after a snapshot (which carries only the newest orders) and whenever the stream
// announced orders that the page knows only by id. One refresh runs at a time; requests made
// meanwhile merge. Page size, how far back to look and how many orders there can be are the
// server's `limits` from the snapshot.

import { api } from './api.js';

const MIN_GAP_MS = 400; // between two refreshes, so a flood of new orders costs few requests

export class OrderSync {
  /** fetchJson(path): a GET of the API (api.js's `api`; tests pass their own). */
  constructor(store, { onError, fetchJson = api }) {
    this.store = store;
    this.onError = onError;
    this.fetchJson = fetchJson;
    this.pending = null;
    this.running = false;
    this.timer = null;
    this.lastRun = 0;
  }

  /**
   * staleFrom: refresh down to this order number (orders newer than the newest we held,
   * and unfinished ones we held, may have changed unseen); initial: on page load, reach
   * `limits.initial_orders` back; stubs: find the orders known only by id.
   */
  request({ staleFrom = null, initial = false, stubs = false } = {}) {
    const p = this.pending || { staleFrom: null, initial: false, stubs: false };
    if (staleFrom !== null) p.staleFrom = p.staleFrom === null ? staleFrom : Math.min(p.staleFrom, staleFrom);
    p.initial ||= initial;
    p.stubs ||= stubs;
    this.pending = p;
    this._schedule();
  }

  _schedule() {
    if (this.running || this.timer) return;
    const wait = Math.max(0, this.lastRun + MIN_GAP_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this._run();
    }, wait);
  }

  async _run() {
    if (!this.pending) return;
    const job = this.pending;
    this.pending = null;
    this.running = true;
    try {
      await this._refresh(job);
    } catch (err) {
      this.onError(err);
    } finally {
      this.running = false;
      this.lastRun = Date.now();
      if (this.pending) this._schedule();
    }
  }

  async _refresh({ staleFrom, initial, stubs }) {
    const book = this.store.orders;
    const limits = this.store.limits; // a refresh is only requested after a snapshot
    const size = limits.orders_page;
    // Every order the server keeps in memory, and no more.
    const maxPages = Math.ceil(limits.orders / size);
    const startedAt = performance.now();
    let cursor = null;
    let fetched = 0;
    for (let page = 0; page < maxPages; page++) {
      const query = cursor ? `?limit=${size}&cursor=${encodeURIComponent(cursor)}` : `?limit=${size}`;
      const data = await this._readPage(`/api/orders${query}`);
      fetched += data.orders.length;
      if (!data.next_cursor || !data.orders.length) break;
      const oldest = data.orders[data.orders.length - 1].number;
      const more = (staleFrom !== null && oldest > staleFrom)
        || (initial && fetched < limits.initial_orders)
        || (stubs && book.oldestStubKey() !== null && oldest > book.oldestStubKey());
      if (!more) break;
      cursor = data.next_cursor;
    }
    if (initial) this.store.historyLoaded = true;
    // Orders announced before this refresh and still not found are gone from the server's
    // memory: stop looking for them.
    if (stubs) book.forgetStubsBornBefore(startedAt);
  }

  /**
   * Hold every order of these statuses the server has (GET /api/orders?status=, newest
   * first), up to the orders the page may hold: so that a filter shows the orders its count
   * (the server's) counts. Resolves with how many were read; one load of a status at a time.
   */
  async loadStatuses(statuses) {
    const key = statuses.join(',');
    this.loading ??= new Map();
    if (!this.loading.has(key)) {
      this.loading.set(key, this._loadStatuses(statuses).finally(() => this.loading.delete(key)));
    }
    return this.loading.get(key);
  }

  async _loadStatuses(statuses) {
    const limits = this.store.limits;
    const size = limits.orders_page;
    let read = 0;
    for (const status of statuses) {
      let cursor = null;
      for (let page = 0; page < Math.ceil(limits.orders / size) && read < limits.orders; page++) {
        const query = `?status=${status}&limit=${size}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const data = await this._readPage(`/api/orders${query}`);
        read += data.orders.length;
        if (!data.next_cursor || !data.orders.length) break;
        cursor = data.next_cursor;
      }
    }
    return read;
  }

  /**
   * One page of orders into the book. While it was on its way, the stream went on: events
   * of orders the page did not hold yet were dropped (nothing to apply them to), and the
   * page may carry those orders as they were before them. So when events came meanwhile and
   * the page brought new orders, it is read once more: now held, they take every event
   * from here on, and the second answer is at least as new as the first one missed.
   */
  async _readPage(path) {
    const book = this.store.orders;
    let seqAtRequest = this.store.lastSeq ?? 0;
    let data = await this.fetchJson(path);
    const added = data.orders.some((order) => !book.get(order.id));
    for (const order of data.orders) book.upsert(order, seqAtRequest);
    if (added && (this.store.lastSeq ?? 0) > seqAtRequest) {
      seqAtRequest = this.store.lastSeq;
      data = await this.fetchJson(path);
      for (const order of data.orders) book.upsert(order, seqAtRequest);
    }
    this.store.mark('orders');
    return data;
  }
}
