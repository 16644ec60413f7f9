// Honest liveness (static/js/store.js, views/liveness.js): a page that cannot hear its server
// stops its clocks and says how old its numbers are; back, it says what it missed.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { missedWhileAway, Store } from '../../static/js/store.js';
import { missedText, silenceLimitMs, staleText } from '../../static/js/views/liveness.js';
import { snapshot } from './fixtures.js';

const stats = (progress, now = 5000) => ({ orders: {}, tasks: {}, workers: {}, progress, now });
const restart = { id: 40, kind: 'server_restarted', ts: 1, title: 'server restarted: 3 orders recovered, 4 steps to run again', caused: [] };

describe('a page that loses its server', () => {
  it('stops its clocks at the moment it lost it, and starts them again once back', () => {
    const store = new Store();
    store.applySnapshot(snapshot({ last_seq: 10, stats: stats({ completed: 1 }) }));
    const before = store.serverNow();
    assert.ok(store.lose('reconnecting', Date.now()));
    assert.equal(store.lose('silent'), false); // already lost: the first reason stays
    const frozen = store.serverNow();
    assert.ok(frozen >= before);
    assert.equal(store.serverNow(), frozen);
    assert.ok(store.takeDirty().has('live'));
    store.applySnapshot(snapshot({ last_seq: 30, stats: stats({ completed: 9, failed: 2 }), incidents: [restart] }));
    assert.equal(store.lost, null);
    assert.deepEqual({ ...store.missed, seconds: 0 }, {
      seconds: 0, events: 20, completed: 8, failed: 2, incidents: [restart],
    });
  });

  it('counts only incidents opened while away, as the server counts orders', () => {
    const before = { lastSeq: 100, progress: { completed: 50, failed: 1 }, incidentIds: new Set([40]) };
    const death = { id: 120, kind: 'worker_dead', title: 'w-3 died: 9 tasks moved' };
    const missed = missedWhileAway(before, snapshot({ last_seq: 1334, stats: stats({ completed: 850, failed: 4 }), incidents: [death, restart] }), 12.4);
    assert.deepEqual(missed, { seconds: 12.4, events: 1234, completed: 800, failed: 3, incidents: [death] });
    assert.equal(missedText(missed), 'Back after 12 s. Missed meanwhile: 1,234 events · 800 orders completed · 3 failed · w-3 died: 9 tasks moved.');
  });

  it('says so when the server came back without its journal (its events start again at 1)', () => {
    const before = { lastSeq: 100, progress: {}, incidentIds: new Set() };
    const missed = missedWhileAway(before, snapshot({ last_seq: 3, stats: stats({}) }), 3);
    assert.equal(missed.events, null);
    assert.match(missedText(missed), /restarted without its journal/);
  });

  it('after a silence only, says the server was silent and nothing was missed', () => {
    const store = new Store();
    store.applySnapshot(snapshot({ last_seq: 10 }));
    store.lose('silent');
    store.regain();
    assert.equal(store.lost, null);
    assert.match(missedText(store.missed), /^Back after \d+ s: the server was silent meanwhile; nothing was missed\.$/);
  });

  it('counts two absences in a row in one banner until it is dismissed', () => {
    const store = new Store();
    store.applySnapshot(snapshot({ last_seq: 10, stats: stats({ completed: 1 }) }));
    store.lose('reconnecting');
    store.applySnapshot(snapshot({ last_seq: 30, stats: stats({ completed: 4 }), incidents: [restart] }));
    // Back, and the connection drops again before anyone read the banner.
    store.lose('reconnecting');
    store.applySnapshot(snapshot({ last_seq: 35, stats: stats({ completed: 4, failed: 1 }), incidents: [restart] }));
    assert.deepEqual({ ...store.missed, seconds: 0 }, {
      seconds: 0, events: 25, completed: 3, failed: 1, incidents: [restart],
    });
    // A silence after that adds its time and nothing else.
    store.lose('silent');
    store.regain();
    assert.equal(store.missed.events, 25);
    assert.equal(store.missed.silent, undefined);
    // Dismissed: the next absence starts from nothing.
    store.dismissMissed();
    store.lose('reconnecting');
    store.applySnapshot(snapshot({ last_seq: 36, stats: stats({ completed: 5, failed: 1 }), incidents: [restart] }));
    assert.deepEqual({ ...store.missed, seconds: 0 }, {
      seconds: 0, events: 1, completed: 1, failed: 0, incidents: [],
    });
  });

  it('labels its numbers with their age', () => {
    assert.equal(staleText(10_000, 14_900), 'last known, 4 s ago');
    assert.equal(staleText(0, 300_000), 'last known, 5 min ago');
  });

  it('calls a server silent after two missed workers messages, never under a second', () => {
    assert.equal(silenceLimitMs({ workers_interval: 0.5 }), 1000);
    assert.equal(silenceLimitMs({ workers_interval: 2 }), 4000);
    assert.equal(silenceLimitMs({ workers_interval: 0.1 }), 1000);
    assert.equal(silenceLimitMs(null), 1000);
  });
});

describe('the incidents', () => {
  it('come whole with a snapshot, and an incidents message replaces the records it names', () => {
    const store = new Store();
    store.applySnapshot(snapshot({ incidents: [restart], limits: { orders: 50, orders_page: 10, initial_orders: 20, log_events: 30, incidents: 2 } }));
    assert.deepEqual(store.incidents, [restart]);
    const death = { id: 50, kind: 'worker_dead', title: 'w-1 died: 0 tasks moved' };
    store.applyIncidents([death, { ...restart, title: 'server restarted: 3 orders recovered, 5 steps to run again' }]);
    assert.deepEqual(store.incidents.map((i) => [i.id, i.title]), [[50, death.title], [40, 'server restarted: 3 orders recovered, 5 steps to run again']]);
    store.applyIncidents([{ id: 60, kind: 'worker_dead', title: 'w-2 died' }]);
    assert.deepEqual(store.incidents.map((i) => i.id), [60, 50]); // the server keeps as many
  });
});

describe('the order filters', () => {
  it('count as the server counts, never the page\'s own orders', async () => {
    const { serverCounts } = await import('../../static/js/views/table.js');
    const progress = { queued: 1, running: 2, retrying: 0, completed: 2940, failed: 60, cancelled: 7 };
    assert.deepEqual(serverCounts({ progress }), { ...progress, all: 3010 });
    assert.equal(serverCounts({}), null);
  });
});
