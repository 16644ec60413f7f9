// The store (static/js/store.js): snapshots, event batches, the log and the chart's samples.

import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';

import { Store } from '../../static/js/store.js';
import { Feed, LIMITS, orderDict, snapshot, WORKFLOW_DETAILS, WORKFLOWS } from './fixtures.js';

describe('a snapshot', () => {
  it('brings the server caps, settings and workflows, and the store keeps no copies', () => {
    const store = new Store();
    assert.equal(store.limits, null);
    assert.equal(store.config, null);
    assert.equal(store.orders.maxOrders, null);
    store.applySnapshot(snapshot({ limits: { ...LIMITS, orders: 3 }, config: { heartbeat_interval: 0.1, heartbeat_timeout: 0.4, max_retries: 1 } }));
    assert.equal(store.limits.orders, 3);
    assert.equal(store.orders.maxOrders, 3);
    assert.deepEqual(store.orders.workflows, WORKFLOWS);
    assert.equal(store.config.heartbeat_timeout, 0.4);
  });

  it('brings the workflows with their steps policies, for the forms and the DAG', () => {
    const store = new Store();
    assert.equal(store.workflow('ecommerce'), null);
    store.applySnapshot(snapshot());
    assert.ok(store.takeDirty().has('workflows'));
    assert.deepEqual(store.workflowDetails.map((w) => w.name), ['ecommerce', 'ecommerce_invoiced']);
    assert.equal(store.workflow('ecommerce_invoiced'), WORKFLOW_DETAILS[1]);
    assert.equal(store.workflow('nope'), null);
    // A server without them (an older one) leaves none, not the previous server's.
    store.applySnapshot(snapshot({ workflow_details: undefined }));
    assert.deepEqual(store.workflowDetails, []);
  });

  it('marks what changed and ends the wait for one', () => {
    const store = new Store();
    let frames = 0;
    store.onDirty = () => frames++;
    const ring = { arcs: [[0, 1, 'w-1']], shares: { 'w-1': 1 } };
    const result = store.applySnapshot(snapshot({ last_seq: 7, ring, orders: [orderDict('o-1', 1)] }));
    assert.deepEqual(result, { staleFrom: null, initial: true });
    assert.equal(store.lastSeq, 7);
    assert.equal(store.awaitingSnapshot, false);
    assert.ok(frames > 0);
    const dirty = store.takeDirty();
    for (const part of ['orders', 'workers', 'ring', 'stats', 'conn']) assert.ok(dirty.has(part), part);
    assert.equal(store.takeDirty().size, 0);
    assert.equal(store.orders.get('o-1').customer, 'ada');
  });

  it('after a reconnect, names how far back held orders may be stale', () => {
    const store = new Store();
    store.applySnapshot(snapshot({ orders: [orderDict('o-1', 1, { status: 'in_progress' }), orderDict('o-2', 2, { status: 'completed' })] }));
    store.historyLoaded = true;
    // The second snapshot carries only newer orders: o-1 was not in it and is unfinished.
    const { staleFrom, initial } = store.applySnapshot(snapshot({ last_seq: 50, orders: [orderDict('o-9', 9)] }));
    assert.equal(initial, false);
    assert.equal(staleFrom, 1);
  });
});

describe('an events batch', () => {
  it('is ignored until a snapshot arrived', () => {
    const store = new Store();
    const feed = new Feed();
    assert.equal(store.applyEvents([feed.submitted('o-1')]), 'ignored');
    assert.equal(store.orders.list.length, 0);
    assert.equal(store.counters.ignored, 1);
  });

  it('applies events after the snapshot and skips those already in it', () => {
    const store = new Store();
    const feed = new Feed();
    const old = feed.submitted('o-old');
    store.applySnapshot(snapshot({ last_seq: feed.seq }));
    const fresh = feed.submitted('o-new');
    assert.equal(store.applyEvents([old, fresh]), 'ok');
    assert.equal(store.lastSeq, fresh.seq);
    assert.equal(store.orders.get('o-old'), undefined);
    assert.ok(store.orders.get('o-new'));
  });

  it('with a jump in seq reports a gap and waits for the next snapshot', () => {
    const store = new Store();
    store.applySnapshot(snapshot({ last_seq: 10 }));
    const feed = new Feed(11); // seq 11 never arrives
    assert.equal(store.applyEvents([feed.submitted('o-1')]), 'gap');
    assert.equal(store.awaitingSnapshot, true);
    assert.equal(store.counters.gaps, 1);
    assert.equal(store.lastSeq, 10);
    assert.equal(store.applyEvents([feed.submitted('o-2')]), 'ignored');
  });

  it('follows a fan-out order with the workflows from the snapshot', () => {
    const store = new Store();
    const feed = new Feed();
    store.applySnapshot(snapshot());
    store.applyEvents([feed.submitted('o-1', 'ecommerce_invoiced'), ...feed.runs('o-1', 'payment')]);
    const tasks = store.orders.get('o-1').tasks;
    assert.deepEqual([tasks.packing.status, tasks.invoice.status, tasks.shipping.status], ['ready', 'ready', 'pending']);
  });

  it('tells the timeline about order events and the ring about worker changes', () => {
    const store = new Store();
    const feed = new Feed();
    store.applySnapshot(snapshot());
    const seen = [];
    let ringReads = 0;
    store.onOrderEvent = (ev) => seen.push(ev.type);
    store.onWorkersChanged = () => ringReads++;
    store.applyEvents([feed.submitted('o-1'), feed.event('worker_added', { worker_id: 'w-3' }),
      feed.event('worker_dead', { worker_id: 'w-1' })]);
    assert.deepEqual(seen, ['order_submitted']);
    assert.equal(ringReads, 1, 'once per batch');
  });
});

describe('the event log', () => {
  it('keeps only notable events, up to the cap the server named', () => {
    const store = new Store();
    const feed = new Feed();
    store.applySnapshot(snapshot({ limits: { ...LIMITS, log_events: 5 } }));
    store.applyEvents([feed.submitted('o-1'), feed.task('task_started', 'o-1', 'payment')]);
    assert.equal(store.log.length, 0, 'submissions and starts are not notable');
    // The log is trimmed in chunks: once it is 200 over the cap, back to the cap.
    const batch = [];
    for (let i = 0; i < 205; i++) batch.push(feed.event('worker_added', { worker_id: `w-${i}` }));
    store.applyEvents(batch);
    assert.equal(store.log.length, 205);
    store.applyEvents([feed.event('worker_dead', { worker_id: 'w-0' })]);
    assert.equal(store.log.length, 5);
    assert.equal(store.log.at(-1).type, 'worker_dead');
  });

  it('merges a snapshot\'s recent events after the older ones it held', () => {
    const store = new Store();
    const feed = new Feed();
    const a = feed.event('worker_added', { worker_id: 'w-1' });
    const b = feed.event('worker_dead', { worker_id: 'w-1' });
    const c = feed.event('worker_added', { worker_id: 'w-2' });
    store.applySnapshot(snapshot({ last_seq: a.seq, events: [a] }));
    store.applyEvents([b]);
    store.applySnapshot(snapshot({ last_seq: c.seq, events: [b, feed.submitted('o-1'), c] }));
    assert.deepEqual(store.log.map((ev) => ev.seq), [a.seq, b.seq, c.seq]);
  });
});

describe('workers, ring and stats', () => {
  it('marks the ring only when its shape changed', () => {
    const store = new Store();
    const ring = { arcs: [[0, 0.5, 'w-1'], [0.5, 1, 'w-2']], shares: { 'w-1': 0.5, 'w-2': 0.5 } };
    store.setRing(ring);
    assert.ok(store.takeDirty().has('ring'));
    store.setRing(structuredClone(ring));
    assert.ok(!store.takeDirty().has('ring'));
    store.setRing({ arcs: [[0, 1, 'w-1']], shares: { 'w-1': 1 } });
    assert.ok(store.takeDirty().has('ring'));
  });

  it('draws the chart from the server\'s rates: the newest point is the tiles\' numbers', () => {
    const store = new Store();
    let now = 1_000_000;
    mock.method(Date, 'now', () => now);
    try {
      const stats = (orders, ready, clock) => ({
        now: clock, rates: { orders_per_s: orders, steps_per_s: orders * 3, failures_per_s: 0.5 },
        tasks: { ready, assigned: 1, retry_wait: 1 },
      });
      store.setStats(stats(14.1, 0, 1000));
      assert.deepEqual([store.series.t, store.series.orders, store.series.steps, store.series.queued],
        [[1000], [14.1], [14.1 * 3], [2]]);
      now += 500;
      store.setStats(stats(12, 4, 1000.5)); // within a second: the newest point is replaced
      assert.deepEqual([store.series.t, store.series.orders, store.series.queued], [[1000], [12], [6]]);
      now += 500;
      store.setStats(stats(0, 0, 1001));
      assert.deepEqual([store.series.t, store.series.orders], [[1000, 1001], [12, 0]]);
      now += 4_000_000; // past the hour: the old points slide out
      store.setStats(stats(1, 0, 1001 + 4000));
      assert.deepEqual(store.series.t, [5001]);
    } finally {
      mock.restoreAll();
    }
  });

  it('puts the server\'s history in front of the points it sampled itself', () => {
    const store = new Store();
    mock.method(Date, 'now', () => 10_000_000);
    try {
      store.setStats({ now: 10_000, rates: { orders_per_s: 3, steps_per_s: 9, failures_per_s: 0 }, tasks: {} });
      store.loadHistory({
        t: [5000, 8000, 9990, 10_000], orders_per_s: [9, 1, 2, 99], steps_per_s: [27, 3, 6, 99],
        failures_per_s: [0, 0.5, 0, 99], queued: [4, 0, 1, 99], retrying: [1, 0, 0, 99],
      });
      // 5000 is older than the hour kept; 10,000 is what the page sampled itself.
      assert.deepEqual(store.series.t, [8000, 9990, 10_000]);
      assert.deepEqual(store.series.orders, [1, 2, 3]);
      assert.deepEqual(store.series.failures, [0.5, 0, 0]);
      assert.deepEqual(store.series.queued, [0, 1, 0]);
      assert.ok(store.historyFetched);
    } finally {
      mock.restoreAll();
    }
  });

  it('takes the server clock from its stats when they carry it', () => {
    const store = new Store();
    mock.method(Date, 'now', () => 10_000_000);
    try {
      store.setStats({ now: 9_000, tasks: {} });
      store.applySnapshot(snapshot({ events: [{ seq: 1, ts: 5_000, type: 'worker_added' }], last_seq: 1,
        stats: { now: 9_000, orders: {}, tasks: {}, workers: {} } }));
      assert.equal(store.serverNow(), 9_000); // not the last event's time: the server may idle
    } finally {
      mock.restoreAll();
    }
  });

  it('estimates the server clock from event times', () => {
    const store = new Store();
    mock.method(Date, 'now', () => 10_000_000);
    try {
      store.applySnapshot(snapshot({ events: [{ seq: 1, ts: 9_990, type: 'worker_added' }], last_seq: 1 }));
      assert.equal(store.serverNow(), 9_990);
    } finally {
      mock.restoreAll();
    }
  });
});
