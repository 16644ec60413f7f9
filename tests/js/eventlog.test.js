// The event log (static/js/views/eventlog.js): incidents (a worker's death, a drain, a
// restart) are one entry each with the events they caused inside, never buried under them.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { entries, incidentText } from '../../static/js/views/eventlog.js';

const death = { seq: 10, ts: 1, type: 'worker_dead', worker_id: 'w-2', message: 'worker w-2 declared dead' };
const move = (seq, order) => ({
  seq, ts: 1, type: 'task_reassigned', order_id: order, step: 'payment', from_worker: 'w-2', worker_id: null, reason: 'worker dead', cause: 10, message: 'moved',
});
const failure = (seq) => ({ seq, ts: 2, type: 'task_failed', order_id: 'o-x', step: 'packing', attempt: 1, worker_id: 'w-1', error: 'boom', message: 'failed' });
const all = () => true;

describe('the event log', () => {
  it('folds the moves a death caused into one entry, newest first among the rest', () => {
    const log = [death, move(11, 'o-a'), move(12, 'o-b'), move(13, 'o-c'), failure(14)];
    const shown = entries(log, all);
    assert.deepEqual(shown.map((e) => e.ev.seq), [14, 10]);
    assert.deepEqual(shown[1].children.map((c) => c.seq), [11, 12, 13]);
    assert.equal(shown[0].children, null);
  });

  it('says how many tasks the death moved', () => {
    const children = [move(11, 'o-a'), move(12, 'o-b')];
    assert.equal(incidentText(death, children), 'w-2 died: 2 tasks moved');
    assert.equal(incidentText(death, [move(11, 'o-a')]), 'w-2 died: 1 task moved');
    assert.equal(incidentText({ ...death, type: 'worker_draining' }, children), 'w-2 drained: 2 queued tasks moved');
  });

  it('names what a restart recovered', () => {
    const restart = { seq: 5, ts: 0, type: 'server_restarted', orders: 3, steps: 4, message: 'restarted' };
    assert.equal(incidentText(restart, []), 'server restarted: 3 orders recovered, 4 steps to run again');
  });

  it('keeps an incident whose moves pass the filters even when its own kind does not', () => {
    const log = [death, move(11, 'o-a'), failure(12)];
    const onlyMoves = (ev) => ev.type === 'task_reassigned';
    const shown = entries(log, onlyMoves);
    assert.deepEqual(shown.map((e) => e.ev.seq), [10]);
  });

  it('is not pushed out of the newest rows by its own moves', () => {
    const log = [death];
    for (let i = 0; i < 500; i++) log.push(move(11 + i, `o-${i}`));
    const shown = entries(log, all, 200);
    assert.equal(shown.length, 1);
    assert.equal(shown[0].children.length, 500);
  });
});
