// The order sync (static/js/sync.js): which pages of GET /api/orders it reads, with the
// page size and reach the server named in the snapshot's `limits`.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Store } from '../../static/js/store.js';
import { OrderSync } from '../../static/js/sync.js';
import { Feed, LIMITS, orderDict, snapshot } from './fixtures.js';

/** A fake GET /api/orders over orders numbered 1..count, newest first, cursor = a number. */
function fakeApi(count) {
  const paths = [];
  const fetchJson = async (path) => {
    paths.push(path);
    const url = new URL(path, 'http://server');
    assert.equal(url.pathname, '/api/orders');
    const limit = Number(url.searchParams.get('limit'));
    const before = url.searchParams.has('cursor') ? Number(url.searchParams.get('cursor')) : count + 1;
    const orders = [];
    for (let n = before - 1; n >= 1 && orders.length < limit; n--) orders.push(orderDict(`o-${n}`, n));
    const last = orders.at(-1)?.number;
    return { orders, next_cursor: last > 1 ? String(last) : null };
  };
  return { paths, fetchJson };
}

function setUp(count, limits = LIMITS) {
  const store = new Store();
  store.applySnapshot(snapshot({ limits }));
  const server = fakeApi(count);
  const errors = [];
  const sync = new OrderSync(store, { onError: (e) => errors.push(e), fetchJson: server.fetchJson });
  return { store, sync, server, errors };
}

describe('a refresh', () => {
  it('on page load reads pages of the server\'s size until it reached initial_orders', async () => {
    const { store, sync, server } = setUp(100); // pages of 10, 20 orders initially
    await sync._refresh({ staleFrom: null, initial: true, stubs: false });
    assert.deepEqual(server.paths, ['/api/orders?limit=10', '/api/orders?limit=10&cursor=91']);
    assert.equal(store.orders.list.length, 20);
    assert.equal(store.historyLoaded, true);
  });

  it('after a reconnect reads back to the oldest order that may be stale', async () => {
    const { store, sync, server } = setUp(100);
    await sync._refresh({ staleFrom: 65, initial: false, stubs: false });
    assert.equal(server.paths.length, 4); // 100..91, 90..81, 80..71, 70..61
    assert.equal(store.orders.get('o-61').customer, 'ada');
    assert.equal(store.historyLoaded, false);
  });

  it('reads no more than the orders the server keeps, however stale the page is', async () => {
    const { sync, server } = setUp(1000, { ...LIMITS, orders: 35 });
    await sync._refresh({ staleFrom: 1, initial: false, stubs: false });
    assert.equal(server.paths.length, 4); // ceil(35 / 10)
  });

  it('looks for orders known only by id, and gives up on those it cannot find', async () => {
    const { store, sync, server } = setUp(30);
    const feed = new Feed();
    store.applyEvents([feed.submitted('o-30'), feed.submitted('o-ghost')]);
    assert.equal(store.orders.stubs, 2);
    await sync._refresh({ staleFrom: null, initial: false, stubs: true });
    assert.equal(store.orders.get('o-30').hydrated, true);
    assert.equal(store.orders.stubs, 0, 'o-ghost is no longer looked for');
    assert.ok(server.paths.length >= 1);
  });

  it('reads a page again when events it did not hold came while it was on its way', async () => {
    // A browser behind a loaded server: the answer for o-7 (running) arrives after the
    // stream already passed o-7's completion, dropped then since the page did not hold o-7.
    const store = new Store();
    store.applySnapshot(snapshot());
    const feed = new Feed();
    const running = { payment: { status: 'succeeded' }, packing: { status: 'running' }, shipping: { status: 'pending' } };
    const done = { payment: { status: 'succeeded' }, packing: { status: 'succeeded' }, shipping: { status: 'succeeded' } };
    const answers = [];
    const fetchJson = async (path) => {
      answers.push(path);
      if (answers.length === 1) {
        const stale = orderDict('o-7', 7, { status: 'in_progress', tasks: running });
        store.applyEvents([...feed.runs('o-7', 'packing'), ...feed.runs('o-7', 'shipping'),
          feed.event('order_completed', { order_id: 'o-7' })]);
        return { orders: [stale], next_cursor: null };
      }
      return { orders: [orderDict('o-7', 7, { status: 'completed', tasks: done })], next_cursor: null };
    };
    const sync = new OrderSync(store, { onError: (e) => { throw e; }, fetchJson });
    await sync._refresh({ staleFrom: 1, initial: false, stubs: false });
    assert.equal(answers.length, 2);
    assert.equal(store.orders.get('o-7').status, 'completed');
    assert.equal(store.orders.countByStage().completed, 1);
  });

  it('reads a page once when no event came meanwhile', async () => {
    const { store, sync, server } = setUp(5);
    await sync._refresh({ staleFrom: 1, initial: false, stubs: false });
    assert.deepEqual(server.paths, ['/api/orders?limit=10']);
    assert.equal(store.orders.list.length, 5);
  });

  it('merges requests made while one is pending into one job', () => {
    const { sync } = setUp(10);
    sync.running = true; // as if a refresh were under way: nothing is scheduled
    sync.request({ staleFrom: 40 });
    sync.request({ staleFrom: 25, stubs: true });
    sync.request({ initial: true });
    assert.deepEqual(sync.pending, { staleFrom: 25, initial: true, stubs: true });
    assert.equal(sync.timer, null);
  });

  it('reports a failed read and runs the next request afterwards', async () => {
    const store = new Store();
    store.applySnapshot(snapshot());
    const errors = [];
    const sync = new OrderSync(store, {
      onError: (e) => errors.push(e.message),
      fetchJson: async () => { throw new Error('HTTP 500'); },
    });
    sync.pending = { staleFrom: null, initial: true, stubs: false };
    await sync._run();
    assert.deepEqual(errors, ['HTTP 500']);
    assert.equal(sync.running, false);
    assert.equal(sync.pending, null);
  });
});
