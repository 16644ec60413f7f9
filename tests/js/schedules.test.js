// The schedules panel (static/js/views/schedules.js): what a schedule's row says.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { scheduleCells } from '../../static/js/views/schedules.js';

const VIEW = {
  name: 'reconcile', cron: '0 3 * * *', tz: 'Europe/Berlin', workflow: 'nightly', catch_up: true,
  next: 1, next_iso: '2026-12-08T03:00:00+01:00', runs: 1, skipped: 0,
  last_run: { at: 0, at_iso: '2026-12-07T03:00:00+01:00', order_id: 'o-12', fired_at: 0 },
};

describe('a schedule row', () => {
  it('shows its cron with its zone, its next time and its last run with its order', () => {
    assert.deepEqual(scheduleCells(VIEW), {
      cron: '0 3 * * * (Europe/Berlin)', workflow: 'nightly', next: '2026-12-08T03:00:00+01:00',
      last: '2026-12-07T03:00:00+01:00', runs: '1 run', order: 'o-12',
    });
  });
  it('says when it has not run, never runs again, skipped times and has no catch-up', () => {
    const cells = scheduleCells({ ...VIEW, workflow: null, next_iso: null, last_run: null, runs: 0, skipped: 3, catch_up: false });
    assert.deepEqual(cells, {
      cron: '0 3 * * * (Europe/Berlin)', workflow: 'default', next: 'never again',
      last: 'not yet', runs: '0 runs, 3 skipped, no catch-up', order: null,
    });
  });
});
