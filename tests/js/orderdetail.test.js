// What the order view shows of an order (static/js/orderdetail.js): its lines and total, each
// step's result and each failed attempt's error with its traceback.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { fmtMoney, oneLine, orderLines, raisedAt, resultText, stepAttempts } from '../../static/js/orderdetail.js';

const TRACE = 'Traceback (most recent call last):\n  File "/srv/shop/app.py", line 57, in invoice\n    render(ctx)\n'
  + '  File "/srv/shop/pdf.py", line 12, in render\n    raise RuntimeError("invoice PDF renderer crashed")\n'
  + 'RuntimeError: invoice PDF renderer crashed';

describe('the lines of an order', () => {
  it('are each sku, quantity, price and line total, with the order total and units', () => {
    const { lines, total, units } = orderLines({ items: [{ sku: 'A1', qty: 2, price: 1.25 }, { sku: 'B2', qty: 1, price: 1.25 }] });
    assert.deepEqual(lines, [{ sku: 'A1', qty: 2, price: 1.25, total: 2.5 }, { sku: 'B2', qty: 1, price: 1.25, total: 1.25 }]);
    assert.equal(total, 3.75);
    assert.equal(units, 3);
  });

  it('are none for an order without items, and a malformed line counts as 0', () => {
    assert.deepEqual(orderLines(undefined), { lines: [], total: 0, units: 0 });
    assert.deepEqual(orderLines({ items: [{ sku: 7, qty: 'x' }] }).lines, [{ sku: '7', qty: 0, price: 0, total: 0 }]);
  });

  it('write money with two decimals and thousands separators', () => {
    assert.equal(fmtMoney(3.75), '3.75');
    assert.equal(fmtMoney(1204.5), '1,204.50');
    assert.equal(fmtMoney(undefined), '0.00');
  });
});

describe('the attempts of each step', () => {
  const order = {
    tasks: {
      payment: { status: 'succeeded', attempts: 1, result: { charge_id: 'ch_1' } },
      invoice: { status: 'failed', attempts: 2, result: null, error: 'RuntimeError: invoice PDF renderer crashed' },
      shipping: { status: 'cancelled', attempts: 0, result: null },
    },
    events: [
      { seq: 1, type: 'task_succeeded', step: 'payment', attempt: 1, worker_id: 'w-1', ts: 1 },
      { seq: 2, type: 'task_failed', step: 'invoice', attempt: 1, worker_id: 'w-1', ts: 2, error: 'RuntimeError: invoice PDF renderer crashed', traceback: TRACE, message: 'm' },
      { seq: 3, type: 'task_failed', step: 'invoice', attempt: 2, worker_id: 'p-a-1', ts: 3, error: 'gateway answered 503', message: 'm' },
      { seq: 4, type: 'order_failed', ts: 4, message: 'm' },
    ],
  };

  it('are each step in order with its result once it succeeded', () => {
    const steps = stepAttempts(order);
    assert.deepEqual(steps.map((s) => [s.step, s.hasResult]), [['payment', true], ['invoice', false], ['shipping', false]]);
    assert.deepEqual(steps[0].result, { charge_id: 'ch_1' });
  });

  it('list each failed attempt with its worker, error and traceback (null without one)', () => {
    const [, invoice] = stepAttempts(order);
    assert.deepEqual(invoice.failures.map((f) => [f.seq, f.attempt, f.worker, f.error, f.traceback]), [
      [2, 1, 'w-1', 'RuntimeError: invoice PDF renderer crashed', TRACE],
      [3, 2, 'p-a-1', 'gateway answered 503', null],
    ]);
  });

  it('show a result whole as indented JSON, or on one cut line', () => {
    assert.equal(resultText({ charge_id: 'ch_1' }), '{\n  "charge_id": "ch_1"\n}');
    assert.equal(resultText(null), 'null');
    assert.equal(oneLine('{\n  "a": 1\n}'), '{ "a": 1 }');
    assert.equal(oneLine('x'.repeat(10), 5), 'xxxx…');
  });

  it('name where a traceback was raised as its innermost frame', () => {
    assert.equal(raisedAt(TRACE), 'pdf.py:12 in render');
    assert.equal(raisedAt('  File "C:\\\\shop\\\\app.py", line 3, in pay'), 'app.py:3 in pay');
    assert.equal(raisedAt(null), null);
    assert.equal(raisedAt('no frames'), null);
  });
});
