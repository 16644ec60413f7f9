// The event log (static/js/views/eventlog.js): incidents (a worker's death, a drain, a
// restart) are the server's records, one entry each with the events they caused inside,
// never buried under them, and never lost behind more events than the page holds.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { emptyLogText, entries, summary } from '../../static/js/views/eventlog.js';

const death = { seq: 10, ts: 1, type: 'worker_dead', worker_id: 'w-2', message: 'worker w-2 declared dead' };
const move = (seq, order) => ({
  seq, ts: 1, type: 'task_reassigned', order_id: order, step: 'payment', from_worker: 'w-2', worker_id: null, reason: 'worker dead', cause: 10, message: 'moved',
});
const failure = (seq) => ({ seq, ts: 2, type: 'task_failed', order_id: 'o-x', step: 'packing', attempt: 1, worker_id: 'w-1', error: 'boom', message: 'failed' });
const all = () => true;
// The server's record of the death (scheduler/runtime/incidents.py), as a snapshot carries it.
const record = (caused, over = {}) => ({
  id: 10, kind: 'worker_dead', ts: 1, title: `w-2 died: ${caused.length} tasks moved`, message: death.message,
  worker: 'w-2', pinned: true, counts: { moved: caused.length }, caused, caused_total: caused.length, ...over,
});

describe('the event log', () => {
  it('shows a death as the server\'s record, its moves folded inside, newest first among the rest', () => {
    const moves = [move(11, 'o-a'), move(12, 'o-b'), move(13, 'o-c')];
    const shown = entries([death, ...moves, failure(14)], all, 200, [record(moves)]);
    assert.deepEqual(shown.map((e) => e.ev.seq), [14, 10]);
    assert.equal(shown[1].incident.title, 'w-2 died: 3 tasks moved');
    assert.deepEqual(shown[1].incident.caused.map((c) => c.seq), [11, 12, 13]);
    assert.equal(shown[0].incident, null);
  });

  it('shows an incident whose events the page never held (a restart before 1,000 recoveries)', () => {
    const restart = {
      id: 5, kind: 'server_restarted', ts: 0, title: 'server restarted: 900 orders recovered, 1,000 steps to run again',
      message: 'restarted', worker: null, pinned: true, counts: { recovered: 1000 }, caused: [], caused_total: 1000,
    };
    const recovered = (seq) => ({ seq, ts: 1, type: 'task_recovered', order_id: `o-${seq}`, step: 'payment', cause: 5, message: 'queued again' });
    const log = [];
    for (let seq = 600; seq < 1006; seq++) log.push(recovered(seq));
    log.push(failure(1006));
    const shown = entries(log, all, 200, [restart]);
    // Its recoveries are inside it, not 200 rows of their own that push it out of view.
    assert.deepEqual(shown.map((e) => e.ev.seq), [1006, 5]);
    assert.equal(shown[1].ev.type, 'server_restarted');
  });

  it('keeps an incident whose moves pass the filters even when its own kind does not', () => {
    const shown = entries([death, move(11, 'o-a'), failure(12)], (ev) => ev.type === 'task_reassigned', 200,
      [record([move(11, 'o-a')])]);
    assert.deepEqual(shown.map((e) => e.ev.seq), [10]);
  });

  it('is not pushed out of the newest rows by its own moves', () => {
    const log = [death];
    for (let i = 0; i < 500; i++) log.push(move(11 + i, `o-${i}`));
    const shown = entries(log, all, 200, [record(log.slice(1, 51), { caused_total: 500 })]);
    assert.equal(shown.length, 1);
    assert.equal(shown[0].incident.caused_total, 500);
  });

  it('summarises late results counted together without an order as what they are', () => {
    const counted = { seq: 3, ts: 1, type: 'result_rejected', order_id: null, step: null, worker_id: 'w-2', count: 12, message: '12 more late results' };
    assert.deepEqual(summary(counted), ['12 more late results from w-2 ignored (counted, not listed one by one)']);
  });
});

describe('an empty log', () => {
  it('says a picked kind hides the rest, and how to see every kind again', () => {
    assert.equal(emptyLogText('moves', ''), 'No moves in the log. Showing Moves only: click Moves again, or All, for every kind.');
    assert.equal(emptyLogText('failures', 'w-2'), 'No failures in the log matching “w-2”. Showing Failures only: click Failures again, or All, for every kind.');
    assert.equal(emptyLogText(null, 'zzz'), 'Nothing in the log matches “zzz”.');
    assert.equal(emptyLogText(null, ''), 'Failures, retries, moves, worker changes and operator actions appear here.');
  });
});

describe('a failed compensation', () => {
  it('is an incident of its order, with the order to open (where its undos are retried)', () => {
    const incident = {
      id: 20, kind: 'compensation_failed', ts: 3, title: 'order o-9 compensation failed: refund declined',
      message: 'order o-9 compensation failed: refund declined', worker: null, order: 'o-9', pinned: true,
      counts: {}, caused: [], caused_total: 0,
    };
    const [shown] = entries([], all, 200, [incident]);
    assert.equal(shown.ev.type, 'order_compensation_failed');
    assert.equal(shown.ev.order_id, 'o-9');
  });
});
