// Running an order again from the order view (static/js/views/timeline.js): which orders
// offer it, and what the confirmation says about idempotency keys.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { RERUNNABLE, rerunText } from '../../static/js/views/timeline.js';

describe('running an order again from a step', () => {
  it('is offered for finished orders whose undos did not run', () => {
    assert.deepEqual([...RERUNNABLE].sort(), ['cancelled', 'completed', 'failed']);
  });

  it('says whether a charge is repeated', () => {
    assert.match(rerunText({}, 'payment', false), /^payment and every step after it run again, .* the same idempotency keys/);
    assert.match(rerunText({}, 'payment', true), /NEW idempotency keys: a payment among them is charged again/);
  });
});
