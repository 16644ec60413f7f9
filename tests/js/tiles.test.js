// The header tiles (static/js/views/tiles.js): what each shows of the server's stats. Here the
// slots tile: capacity in use, stuck slots and the tasks steps' limits hold back.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { TILES } from '../../static/js/views/tiles.js';

const slots = TILES.find((t) => t.key === 'slots');
const stats = (over = {}) => ({
  orders: {}, workers: {}, tasks: {}, slots: { total: 0, busy: 0, stuck: 0 }, held_by_limits: {}, ...over,
});

describe('the slots tile', () => {
  it('shows slots in use (stuck ones count as in use) of the live workers total', () => {
    assert.equal(slots.value(stats({ slots: { total: 64, busy: 10, stuck: 2 } })), '12/64');
    assert.equal(slots.value(stats({ slots: undefined })), '0/0');
  });

  it('is calm with nothing stuck or held, and says how many ready tasks wait', () => {
    const s = stats({ slots: { total: 8, busy: 8, stuck: 0 }, tasks: { ready: 1200 } });
    assert.equal(slots.tone(s), '');
    assert.equal(slots.sub(s), '1,200 ready waiting');
  });

  it('warns when a step limit holds tasks back, naming the steps', () => {
    const s = stats({ held_by_limits: { payment: 3, shipping: 1, packing: 0 } });
    assert.equal(slots.tone(s), 'warn');
    assert.equal(slots.sub(s), 'held: payment 3, shipping 1');
    assert.match(slots.title(s), /held back by their step's limits: payment 3, shipping 1/);
  });

  it('turns bad when a slot is stuck, stuck first', () => {
    const s = stats({ slots: { total: 4, busy: 1, stuck: 2 }, held_by_limits: { payment: 1 } });
    assert.equal(slots.tone(s), 'bad');
    assert.equal(slots.sub(s), '2 stuck · held: payment 1');
    assert.match(slots.title(s), /1 running, 2 stuck .* of 4 slots/);
  });

  it('warns of threads abandoned to hung handlers, whose slots serve again', () => {
    const s = stats({ slots: { total: 8, busy: 2, stuck: 0, abandoned: 3 } });
    assert.equal(slots.value(s), '2/8');
    assert.equal(slots.tone(s), 'warn');
    assert.equal(slots.sub(s), '3 abandoned');
    assert.match(slots.title(s), /3 threads abandoned to handlers that ignored their cancellation/);
  });

  it('turns bad when a step has no live worker that can run it, naming the step', () => {
    const s = stats({ unroutable: { payment: 2, packing: 0 } });
    assert.equal(slots.tone(s), 'bad');
    assert.equal(slots.sub(s), 'no worker can run: payment 2');
  });
});

const workers = TILES.find((t) => t.key === 'workers');

describe('the workers tile', () => {
  const v1 = { key: 'checkout@v1', workflow: 'checkout', version: 'v1', unfinished: 12, current: false, offered: false };
  const v2 = { key: 'checkout@v2', workflow: 'checkout', version: 'v2', unfinished: 3, current: true, offered: true };

  it('is calm when every unfinished order runs the current version', () => {
    const s = stats({ workers: { alive: 2, dead: 0 }, definitions: [v2, { ...v1, unfinished: 0 }] });
    assert.equal(workers.tone(s), '');
    assert.equal(workers.sub(s), 'alive · 0 dead');
    assert.equal(workers.title(s), 'checkout v2: 3 unfinished orders, the running app\'s\ncheckout v1: 0 unfinished orders, no live worker offers it');
  });

  it('names each old version with the orders left on it, bad while no worker offers it', () => {
    const s = stats({ workers: { alive: 2, dead: 0 }, definitions: [v1, v2] });
    assert.equal(workers.tone(s), 'bad');
    assert.equal(workers.sub(s), 'alive · 0 dead · old versions: checkout v1 12 left (no worker)');
    assert.match(workers.title(s), /checkout v1: 12 unfinished orders, no live worker offers it/);
  });

  it('warns while a worker of an old version finishes its orders', () => {
    const s = stats({ workers: { alive: 3, dead: 0 }, definitions: [{ ...v1, offered: true }, v2] });
    assert.equal(workers.tone(s), 'warn');
    assert.equal(workers.sub(s), 'alive · 0 dead · old versions: checkout v1 12 left');
    assert.match(workers.title(s), /checkout v1: 12 unfinished orders, run by a live worker of it/);
  });
});
