// The alert banners (static/js/views/alerts.js): one per active alert in the server's words,
// gone when the server clears it, with how long it has held.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { heldFor } from '../../static/js/views/alerts.js';

describe('how long an alert has held', () => {
  it('counts seconds, then minutes, then hours and minutes', () => {
    assert.equal(heldFor(100, 112.9), 'for 12 s');
    assert.equal(heldFor(100, 100 + 59), 'for 59 s');
    assert.equal(heldFor(100, 100 + 60), 'for 1 min');
    assert.equal(heldFor(100, 100 + 3599), 'for 59 min');
    assert.equal(heldFor(100, 100 + 3600), 'for 1 h');
    assert.equal(heldFor(100, 100 + 7500), 'for 2 h 5 min');
  });

  it('never goes below zero when the page\'s clock is behind the server\'s', () => {
    assert.equal(heldFor(200, 150), 'for 0 s');
  });
});
