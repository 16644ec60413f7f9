// Moving orders off an old workflow version (static/js/views/versions.js): which versions
// are offered, and what the confirmation says.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { movable, planText } from '../../static/js/views/versions.js';

const DEFINITIONS = [
  { key: 'checkout@v1', workflow: 'checkout', version: 'v1', unfinished: 18, current: false, offered: false },
  { key: 'checkout@v0', workflow: 'checkout', version: 'v0', unfinished: 0, current: false, offered: false },
  { key: 'checkout2@v2', workflow: 'checkout2', version: 'v2', unfinished: 3, current: true, offered: true },
];

describe('moving orders off an old version', () => {
  it('offers the old versions that still have orders, towards the running app\'s', () => {
    const { old, targets } = movable({ definitions: DEFINITIONS });
    assert.deepEqual(old.map((d) => d.key), ['checkout@v1']);
    assert.deepEqual(targets.map((d) => d.key), ['checkout2@v2']);
    assert.deepEqual(movable({}), { old: [], targets: [] });
  });

  it('says how many orders move and what becomes of their steps', () => {
    const plan = { count: 2, orders: [
      { order_id: 'o-1', kept: ['payment'], skipped: ['fraud'], dropped: [], to_run: ['packing', 'shipping'] },
      { order_id: 'o-2', kept: [], skipped: [], dropped: ['gift'], to_run: ['fraud', 'payment'] },
    ] };
    assert.equal(planText(plan, 'checkout v1', 'checkout2 v2'),
      '2 unfinished orders of checkout v1 move to checkout2 v2. Steps that succeeded are kept; '
      + '1 step added before steps that ran will be skipped (not run); 1 step the new version '
      + 'lacks will be dropped; 4 steps left to run.');
  });
});
