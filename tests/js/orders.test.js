// The order book (static/js/orders.js): records from snapshots, pages and stream events.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { OrderBook } from '../../static/js/orders.js';
import { Feed, orderDict, statuses, WORKFLOWS } from './fixtures.js';

function book({ maxOrders = 100, workflows = WORKFLOWS } = {}) {
  const b = new OrderBook();
  b.configure({ maxOrders, workflows });
  return b;
}

function applyAll(b, events) {
  for (const ev of events) b.apply(ev);
}

describe('a chain workflow', () => {
  it('queues only the step whose one dependency succeeded', () => {
    const b = book();
    const feed = new Feed();
    b.apply(feed.submitted('o-1', 'ecommerce'));
    assert.deepEqual(statuses(b.get('o-1')), { payment: 'ready', packing: 'pending', shipping: 'pending' });
    applyAll(b, feed.runs('o-1', 'payment'));
    assert.deepEqual(statuses(b.get('o-1')), { payment: 'succeeded', packing: 'ready', shipping: 'pending' });
    applyAll(b, feed.runs('o-1', 'packing'));
    assert.deepEqual(statuses(b.get('o-1')), { payment: 'succeeded', packing: 'succeeded', shipping: 'ready' });
  });
});

describe('a workflow that fans out and in (ecommerce_invoiced)', () => {
  it('queues packing and invoice together once payment succeeded', () => {
    const b = book();
    const feed = new Feed();
    b.apply(feed.submitted('o-1', 'ecommerce_invoiced'));
    assert.deepEqual(statuses(b.get('o-1')),
      { payment: 'ready', packing: 'pending', invoice: 'pending', shipping: 'pending' });
    applyAll(b, feed.runs('o-1', 'payment'));
    assert.deepEqual(statuses(b.get('o-1')),
      { payment: 'succeeded', packing: 'ready', invoice: 'ready', shipping: 'pending' });
  });

  it('runs both branches at once on different workers', () => {
    const b = book();
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1', 'ecommerce_invoiced'), ...feed.runs('o-1', 'payment'),
      feed.task('task_started', 'o-1', 'invoice', { worker_id: 'w-2' }),
      feed.task('task_started', 'o-1', 'packing', { worker_id: 'w-1' })]);
    const rec = b.get('o-1');
    assert.deepEqual(statuses(rec), { payment: 'succeeded', packing: 'running', invoice: 'running', shipping: 'pending' });
    assert.equal(rec.tasks.invoice.worker, 'w-2');
    assert.equal(rec.tasks.packing.worker, 'w-1');
    assert.equal(rec.status, 'in_progress');
  });

  it('keeps shipping pending until both packing and invoice succeeded', () => {
    for (const [first, second] of [['packing', 'invoice'], ['invoice', 'packing']]) {
      const b = book();
      const feed = new Feed();
      applyAll(b, [feed.submitted('o-1', 'ecommerce_invoiced'), ...feed.runs('o-1', 'payment')]);
      applyAll(b, feed.runs('o-1', first));
      assert.equal(b.get('o-1').tasks.shipping.status, 'pending', `${first} alone releases nothing`);
      assert.equal(b.get('o-1').tasks[second].status, 'ready', `${second} is still queued`);
      applyAll(b, feed.runs('o-1', second));
      assert.equal(b.get('o-1').tasks.shipping.status, 'ready', `${first} then ${second}`);
    }
  });

  it('queues both branches again when a failed order is retried', () => {
    const b = book();
    const feed = new Feed();
    applyAll(b, [
      feed.submitted('o-1', 'ecommerce_invoiced'), ...feed.runs('o-1', 'payment'),
      feed.task('task_started', 'o-1', 'packing'),
      feed.task('task_started', 'o-1', 'invoice', { worker_id: 'w-2' }),
      feed.task('task_failed', 'o-1', 'invoice', { worker_id: 'w-2', error: 'printer on fire' }),
      feed.task('task_cancelled', 'o-1', 'packing'),
      feed.task('task_cancelled', 'o-1', 'shipping', { worker_id: null }),
      feed.event('order_failed', { order_id: 'o-1' }),
    ]);
    assert.equal(b.get('o-1').status, 'failed');
    assert.equal(b.get('o-1').tasks.invoice.error, 'printer on fire');
    b.apply(feed.event('order_retried', { order_id: 'o-1' }));
    const rec = b.get('o-1');
    assert.equal(rec.status, 'in_progress');
    assert.equal(rec.finishedAt, null);
    assert.deepEqual(statuses(rec), { payment: 'succeeded', packing: 'ready', invoice: 'ready', shipping: 'pending' });
    assert.equal(rec.tasks.invoice.error, null);
    assert.equal(rec.tasks.invoice.attempts, 0);
  });

  it('guesses nothing for an order of another version of its workflow (a deploy since)', () => {
    // The server now runs a checkout with a fraud check first; this order was submitted
    // under the one without it, and keeps its own steps.
    const b = book({ workflows: { ...WORKFLOWS, ecommerce: { fraud: [], payment: ['fraud'], packing: ['payment'], shipping: ['packing'] } } });
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1', 'ecommerce'), ...feed.runs('o-1', 'payment')]);
    assert.deepEqual(statuses(b.get('o-1')), { payment: 'succeeded', packing: 'pending', shipping: 'pending' });
  });

  it('guesses nothing for a workflow the snapshot did not describe', () => {
    const b = book({ workflows: {} });
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1', 'ecommerce_invoiced'), ...feed.runs('o-1', 'payment')]);
    assert.deepEqual(statuses(b.get('o-1')),
      { payment: 'succeeded', packing: 'pending', invoice: 'pending', shipping: 'pending' });
  });
});

describe('stream events', () => {
  it('make a stub from order_submitted, in submission order, with the steps it names', () => {
    const b = book();
    const feed = new Feed();
    b.upsert(orderDict('o-a', 7), 0);
    b.apply(feed.submitted('o-b', 'ecommerce_invoiced', 'grace'));
    const rec = b.get('o-b');
    assert.equal(rec.hydrated, false);
    assert.equal(rec.customer, 'grace');
    assert.deepEqual(rec.steps, ['payment', 'packing', 'invoice', 'shipping']);
    assert.equal(b.stubs, 1);
    assert.equal(b.oldestStubKey(), 8);
    assert.deepEqual(b.list.map((r) => r.id), ['o-a', 'o-b']);
  });

  it('about orders the page does not hold are ignored', () => {
    const b = book();
    const feed = new Feed();
    assert.equal(b.apply(feed.task('task_started', 'o-gone', 'payment')), null);
    assert.equal(b.apply(feed.event('worker_dead', { worker_id: 'w-1' })), null);
    assert.equal(b.list.length, 0);
  });

  it('older than the record are skipped', () => {
    const b = book();
    b.upsert(orderDict('o-1', 1, { status: 'in_progress', tasks: {
      payment: { status: 'succeeded' }, packing: { status: 'running', worker: 'w-2' }, shipping: { status: 'pending' },
    } }), 10);
    b.apply({ seq: 9, ts: 1, type: 'task_failed', order_id: 'o-1', step: 'packing', worker_id: 'w-2', attempt: 1, message: 'old' });
    assert.equal(b.get('o-1').tasks.packing.status, 'running');
    b.apply({ seq: 11, ts: 1, type: 'task_failed', order_id: 'o-1', step: 'packing', worker_id: 'w-2', attempt: 1, message: 'new' });
    assert.equal(b.get('o-1').tasks.packing.status, 'failed');
    assert.equal(b.get('o-1').tasks.packing.error, 'new');
  });

  it('count every move of a task, off a dead worker and off a drained one alike', () => {
    const b = book();
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1'), feed.task('task_started', 'o-1', 'payment'),
      feed.task('task_reassigned', 'o-1', 'payment', { worker_id: 'w-2', from_worker: 'w-1', reason: 'worker dead', moves: 1 })]);
    let task = b.get('o-1').tasks.payment;
    assert.deepEqual([task.status, task.worker, task.moves], ['assigned', 'w-2', 1]);
    b.apply(feed.task('task_reassigned', 'o-1', 'payment', { worker_id: null, from_worker: 'w-2', reason: 'drain', moves: 2 }));
    task = b.get('o-1').tasks.payment;
    assert.deepEqual([task.status, task.worker, task.moves], ['ready', null, 2]);
  });

  it('take the count a move event names when the page missed earlier moves', () => {
    const b = book();
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1'),
      feed.task('task_reassigned', 'o-1', 'payment', { worker_id: 'w-3', from_worker: 'w-2', reason: 'worker dead', moves: 3 })]);
    assert.equal(b.get('o-1').tasks.payment.moves, 3);
  });

  it('keep the moves a page of the API reports', () => {
    const b = book();
    b.upsert(orderDict('o-1', 1, { status: 'in_progress', tasks: {
      payment: { status: 'assigned', worker: 'w-2', moves: 2 }, packing: { status: 'pending' }, shipping: { status: 'pending' },
    } }), 0);
    assert.equal(b.get('o-1').tasks.payment.moves, 2);
  });

  it('follow a failed attempt into its retry and a later attempt', () => {
    const b = book();
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1'), feed.task('task_started', 'o-1', 'payment'),
      feed.task('task_failed', 'o-1', 'payment', { error: 'declined' })]);
    assert.equal(b.get('o-1').tasks.payment.status, 'failed');
    b.apply(feed.task('task_retrying', 'o-1', 'payment', { attempt: 2, delay: 0.1 }));
    assert.equal(b.get('o-1').tasks.payment.status, 'retry_wait');
    b.apply(feed.task('task_started', 'o-1', 'payment', { attempt: 2 }));
    assert.deepEqual([b.get('o-1').tasks.payment.status, b.get('o-1').tasks.payment.attempts], ['running', 2]);
  });

  it('finish an order with its end time, and count statuses', () => {
    const b = book();
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1'), feed.submitted('o-2'), feed.submitted('o-3')]);
    const done = feed.event('order_completed', { order_id: 'o-1' });
    applyAll(b, [done, feed.event('order_cancelled', { order_id: 'o-2' })]);
    assert.equal(b.get('o-1').finishedAt, done.ts);
    assert.deepEqual(b.countByStatus(), { all: 3, pending: 1, in_progress: 0, waiting: 0, completed: 1, failed: 0, cancelled: 1,
      compensating: 0, compensated: 0, compensation_failed: 0 });
  });

  it('bump the versions the table redraws by', () => {
    const b = book();
    const feed = new Feed();
    b.apply(feed.submitted('o-1'));
    const [structure, change, status, version] = [b.structureVersion, b.changeVersion, b.statusVersion, b.get('o-1').version];
    b.apply(feed.task('task_started', 'o-1', 'payment'));
    assert.equal(b.structureVersion, structure, 'nothing added or moved');
    assert.ok(b.changeVersion > change);
    assert.ok(b.statusVersion > status, 'pending -> in progress');
    assert.ok(b.get('o-1').version > version);
  });
});

describe('pages and snapshots', () => {
  it('replace what no newer event touched', () => {
    const b = book();
    const feed = new Feed(100);
    b.upsert(orderDict('o-1', 1), 100);
    b.apply(feed.task('task_started', 'o-1', 'payment')); // seq 101
    // A page read when the stream stood at 100 is older than that event: state kept.
    b.upsert(orderDict('o-1', 1, { customer: 'late', tasks: { payment: { status: 'assigned' }, packing: { status: 'pending' }, shipping: { status: 'pending' } } }), 100);
    assert.equal(b.get('o-1').tasks.payment.status, 'running');
    assert.equal(b.get('o-1').customer, 'late', 'what events do not carry is filled in');
    // A newer page wins.
    b.upsert(orderDict('o-1', 1, { status: 'completed', tasks: { payment: { status: 'succeeded' }, packing: { status: 'succeeded' }, shipping: { status: 'succeeded' } } }), 105);
    assert.equal(b.get('o-1').status, 'completed');
    // A snapshot is authoritative whatever the mark.
    b.upsert(orderDict('o-1', 1, { status: 'failed' }), 0, true);
    assert.equal(b.get('o-1').status, 'failed');
  });

  it('hydrate a stub and put it at its real number', () => {
    const b = book();
    const feed = new Feed();
    b.upsert(orderDict('o-5', 5), 0);
    b.apply(feed.submitted('o-x'));
    b.upsert(orderDict('o-9', 9), 0);
    assert.deepEqual(b.list.map((r) => r.id), ['o-5', 'o-x', 'o-9']);
    b.upsert(orderDict('o-x', 12), 0);
    assert.deepEqual(b.list.map((r) => r.id), ['o-5', 'o-9', 'o-x']);
    assert.equal(b.stubs, 0);
    assert.equal(b.oldestStubKey(), null);
    assert.equal(b.newestNumber(), 12);
  });

  it('name the oldest unfinished order a snapshot left out', () => {
    const b = book();
    b.upsert(orderDict('o-1', 1, { status: 'completed' }), 0);
    b.upsert(orderDict('o-2', 2, { status: 'in_progress' }), 0);
    b.upsert(orderDict('o-3', 3, { status: 'pending' }), 0);
    assert.equal(b.oldestUnfinishedNumberNotIn(new Set(['o-2'])), 3);
    assert.equal(b.oldestUnfinishedNumberNotIn(new Set(['o-2', 'o-3'])), null);
  });

  it('stop looking for stubs born before a refresh that did not find them', () => {
    const b = book();
    const feed = new Feed();
    b.apply(feed.submitted('o-1'));
    b.get('o-1').born = 5;
    b.forgetStubsBornBefore(4);
    assert.equal(b.stubs, 1);
    b.forgetStubsBornBefore(6);
    assert.equal(b.stubs, 0);
  });
});

describe('the cap on held orders', () => {
  it('is the one the server names, and drops the oldest', () => {
    const b = book({ maxOrders: 10 });
    // Trimming is amortised: it waits for a slack of 1,000 over the cap.
    for (let n = 1; n <= 1011; n++) b.upsert(orderDict(`o-${n}`, n), 0);
    assert.equal(b.list.length, 10);
    assert.equal(b.list[0].id, 'o-1002');
    assert.equal(b.get('o-1'), undefined);
  });

  it('holds everything until the server named one', () => {
    const b = new OrderBook();
    for (let n = 1; n <= 1011; n++) b.upsert(orderDict(`o-${n}`, n), 0);
    assert.equal(b.list.length, 1011);
    b.configure({ maxOrders: 10, workflows: WORKFLOWS });
    assert.equal(b.list.length, 10);
  });

  it('forgets dropped stubs', () => {
    const b = book({ maxOrders: 1 });
    const feed = new Feed();
    for (let n = 1; n <= 1002; n++) b.apply(feed.submitted(`o-${n}`));
    assert.equal(b.list.length, 1);
    assert.equal(b.stubs, 1);
  });
});

describe('a saga (an order undoing its succeeded steps)', () => {
  function failedAfterTheCharge(b, feed) {
    b.apply(feed.submitted('o-1', 'ecommerce_invoiced'));
    applyAll(b, feed.runs('o-1', 'payment'));
    applyAll(b, feed.runs('o-1', 'invoice'));
    applyAll(b, feed.runs('o-1', 'packing'));
    b.apply(feed.task('task_failed', 'o-1', 'shipping', { error: 'carrier down' }));
    b.apply(feed.event('order_compensating', {
      order_id: 'o-1', undo: ['unpack', 'void', 'refund'],
      undoes: { unpack: 'packing', void: 'invoice', refund: 'payment' },
    }));
  }

  it('adds its undos, the first ready and each next once the one before succeeded', () => {
    const b = book();
    const feed = new Feed();
    failedAfterTheCharge(b, feed);
    const rec = b.get('o-1');
    assert.equal(rec.status, 'compensating');
    assert.equal(rec.tasks.void.compensates, 'invoice');
    assert.deepEqual(statuses(rec), {
      payment: 'succeeded', packing: 'succeeded', invoice: 'succeeded', shipping: 'failed',
      unpack: 'ready', void: 'pending', refund: 'pending',
    });
    applyAll(b, feed.runs('o-1', 'unpack'));
    assert.equal(rec.tasks.void.status, 'ready');
    assert.equal(rec.tasks.refund.status, 'pending');
    applyAll(b, feed.runs('o-1', 'void'));
    applyAll(b, feed.runs('o-1', 'refund'));
    b.apply(feed.event('order_compensated', { order_id: 'o-1' }));
    assert.equal(rec.status, 'compensated');
    assert.equal(rec.stage, 'compensated');
    assert.equal(b.countByStage().compensated, 1);
  });

  it('retries only the undos when its compensation failed', () => {
    const b = book();
    const feed = new Feed();
    failedAfterTheCharge(b, feed);
    applyAll(b, feed.runs('o-1', 'unpack'));
    b.apply(feed.task('task_failed', 'o-1', 'void', { error: 'declined' }));
    b.apply(feed.task('task_cancelled', 'o-1', 'refund'));
    b.apply(feed.event('order_compensation_failed', { order_id: 'o-1' }));
    const rec = b.get('o-1');
    assert.equal(rec.stage, 'compensation_failed');
    b.apply(feed.event('order_retried', { order_id: 'o-1', undos: ['unpack', 'void', 'refund'] }));
    assert.equal(rec.status, 'compensating');
    assert.equal(rec.tasks.shipping.status, 'failed'); // the failed step is not retried
    assert.equal(rec.tasks.unpack.status, 'succeeded');
    assert.deepEqual([rec.tasks.void.status, rec.tasks.refund.status], ['ready', 'pending']);
    assert.equal(rec.tasks.refund.compensates, 'payment');
  });
});

describe('an order waiting for the outside world', () => {
  const CHECKOUT = { reserve: [], payment_confirmed: ['reserve'], charge: ['payment_confirmed'], review: ['charge'] };
  function waitingBook() {
    const b = book({ workflows: { ...WORKFLOWS, checkout: CHECKOUT } });
    const feed = new Feed();
    b.apply(feed.event('order_submitted', { order_id: 'o-1', workflow: 'checkout', steps: Object.keys(CHECKOUT), customer: 'ada' }));
    applyAll(b, feed.runs('o-1', 'reserve'));
    b.apply(feed.task('wait_started', 'o-1', 'payment_confirmed', { worker_id: null, until: 5000, on_timeout: 'cancel' }));
    return { b, feed };
  }

  it('is waiting while its wait waits, with nothing queued or running', () => {
    const { b } = waitingBook();
    const rec = b.get('o-1');
    assert.deepEqual(statuses(rec), { reserve: 'succeeded', payment_confirmed: 'waiting', charge: 'pending', review: 'pending' });
    assert.equal(rec.status, 'waiting');
    assert.equal(rec.stage, 'waiting');
    assert.equal(rec.tasks.payment_confirmed.until, 5000);
    assert.equal(b.countByStage().waiting, 1);
    assert.equal(b.countByStatus().waiting, 1);
  });

  it('goes on once its signal completes the wait, and waits again for a delayed step', () => {
    const { b, feed } = waitingBook();
    b.apply(feed.task('signal_received', 'o-1', 'payment_confirmed', { worker_id: null, data: 1 }));
    assert.equal(b.get('o-1').status, 'waiting'); // the signal alone says nothing of the wait
    b.apply(feed.task('wait_completed', 'o-1', 'payment_confirmed', { worker_id: null, how: 'its signal' }));
    const rec = b.get('o-1');
    assert.deepEqual(statuses(rec), { reserve: 'succeeded', payment_confirmed: 'succeeded', charge: 'ready', review: 'pending' });
    assert.equal(rec.status, 'in_progress');
    assert.equal(rec.stage, 'queued');
    applyAll(b, feed.runs('o-1', 'charge'));
    b.apply(feed.task('task_delayed', 'o-1', 'review', { worker_id: null, until: 9000 }));
    assert.equal(rec.tasks.review.status, 'waiting');
    assert.equal(rec.status, 'waiting');
    b.apply(feed.task('task_started', 'o-1', 'review'));
    assert.equal(rec.status, 'in_progress');
    assert.equal(rec.stage, 'running');
  });

  it('shows a wait that timed out into a failure as failed', () => {
    const { b, feed } = waitingBook();
    b.apply(feed.task('wait_timed_out', 'o-1', 'payment_confirmed', { worker_id: null, on_timeout: 'fail' }));
    const rec = b.get('o-1');
    assert.equal(rec.tasks.payment_confirmed.status, 'failed');
    assert.match(rec.tasks.payment_confirmed.error, /wait_timed_out/);
    b.apply(feed.event('order_failed', { order_id: 'o-1' }));
    assert.equal(rec.status, 'failed');
  });

  it('is pending, not waiting, once an order submitted for later has its first step in line', () => {
    const b = book();
    const feed = new Feed();
    b.apply(feed.submitted('o-1', 'ecommerce'));
    b.apply(feed.task('task_delayed', 'o-1', 'payment', { worker_id: null, until: 9000 }));
    const rec = b.get('o-1');
    assert.equal(rec.status, 'waiting');
    b.apply(feed.task('task_started', 'o-1', 'payment'));
    assert.equal(rec.status, 'in_progress');
  });
});

describe('an order moved to another workflow definition by an operator', () => {
  it('takes the new steps, keeps what ran, and counts a skipped step as done', () => {
    const checkout2 = { fraud: [], payment: ['fraud'], packing: ['payment'], shipping: ['packing'] };
    const b = book({ workflows: { ...WORKFLOWS, checkout2 } });
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1', 'ecommerce'), ...feed.runs('o-1', 'payment')]);
    const steps = ['fraud', 'payment', 'packing', 'shipping'];
    applyAll(b, [
      feed.event('order_migrated', { order_id: 'o-1', workflow: 'checkout2', version: 'v2', steps }),
      feed.task('task_skipped', 'o-1', 'fraud', { worker_id: null, attempt: 0 }),
    ]);
    const rec = b.get('o-1');
    assert.equal(rec.workflow, 'checkout2');
    assert.deepEqual(rec.steps, steps);
    assert.deepEqual(statuses(rec), { fraud: 'skipped', payment: 'succeeded', packing: 'ready', shipping: 'pending' });
  });

  it('drops the steps the new definition lacks', () => {
    const b = book();
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1', 'ecommerce'),
      feed.task('task_cancelled', 'o-1', 'payment', { worker_id: null }),
      feed.event('order_migrated', { order_id: 'o-1', workflow: 'ecommerce', steps: ['packing', 'shipping'] })]);
    assert.deepEqual(Object.keys(b.get('o-1').tasks), ['packing', 'shipping']);
  });
});

describe('an order run again from a step by an operator', () => {
  it('puts the steps it names back in line, succeeded ones too', () => {
    const b = book();
    const feed = new Feed();
    applyAll(b, [feed.submitted('o-1', 'ecommerce'), ...feed.runs('o-1', 'payment'),
      ...feed.runs('o-1', 'packing'), ...feed.runs('o-1', 'shipping'),
      feed.event('order_completed', { order_id: 'o-1' }),
      feed.event('order_retried', { order_id: 'o-1', rerun: ['packing', 'shipping'], from_step: 'packing' })]);
    const rec = b.get('o-1');
    assert.equal(rec.status, 'in_progress');
    assert.deepEqual(statuses(rec), { payment: 'succeeded', packing: 'ready', shipping: 'pending' });
  });
});
