// The step controls (static/js/views/stepcontrols.js): when the rows are read again, and the
// limits body the inputs make.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { limitsBody, limitText, pausedSignature } from '../../static/js/views/stepcontrols.js';

describe('the paused steps of the stats', () => {
  it('change their signature when a step is paused, resumed or paused again by another', () => {
    const none = pausedSignature({});
    const one = pausedSignature({ payment: { who: 'a', since: 1 } });
    assert.equal(none, pausedSignature(undefined));
    assert.notEqual(none, one);
    assert.notEqual(one, pausedSignature({ payment: { who: 'the circuit breaker', since: 1 } }));
    assert.equal(pausedSignature({ b: { who: 'x', since: 2 }, a: { who: 'y', since: 3 } }),
      pausedSignature({ a: { who: 'y', since: 3 }, b: { who: 'x', since: 2 } }));
  });
});

describe('limits typed in', () => {
  it('are sent as numbers, an empty field as 0 (no limit)', () => {
    assert.deepEqual(limitsBody('5', '2.5'), { max_in_flight: 5, rate: 2.5 });
    assert.deepEqual(limitsBody(' ', ''), { max_in_flight: 0, rate: 0 });
  });
  it('show none as an empty field', () => {
    assert.equal(limitText(null), '');
    assert.equal(limitText(undefined), '');
    assert.equal(limitText(20), '20');
  });
});
