// Worker cards (static/js/views/workers.js): Kill says beforehand where the worker's tasks go,
// and which would have nowhere to go.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { killMessage, offeredText } from '../../static/js/views/workers.js';
import { stepsOnlyItRuns } from '../../static/js/workflows.js';

// A shop: payment needs the tag `payments` (only machines near the gateway offer it).
const DETAILS = [{
  name: 'checkout',
  steps: [{ name: 'payment', deps: [], tags: ['payments'] }, { name: 'packing', deps: ['payment'], tags: [] }],
}];
const worker = (id, over = {}) => ({ id, status: 'alive', kind: 'thread', steps: null, tags: [], busy: 0, queued: 0, ...over });

describe('killing a worker', () => {
  it('moves its tasks when others can run them', () => {
    const workers = [worker('w-1', { busy: 2, queued: 1 }), worker('w-2')];
    const text = killMessage(workers[0], workers, [{ name: 'c', steps: [{ name: 'packing', deps: [], tags: [] }] }], 2);
    assert.equal(text, 'It stops at once, as if it crashed. The cluster notices within about 2 s (the heartbeat timeout) '
      + 'and moves its 3 tasks to other workers; a step it was running runs again elsewhere.');
  });

  it('says so when it is the only live worker that can run a step', () => {
    const payments = worker('p-552e83-5', { kind: 'process', tags: ['payments'], busy: 4 });
    const workers = [payments, worker('w-1'), worker('w-2'), worker('p-552e83-4', { status: 'dead', tags: ['payments'] })];
    assert.deepEqual(stepsOnlyItRuns(payments, workers, DETAILS), [{ name: 'payment', tags: ['payments'] }]);
    const text = killMessage(payments, workers, DETAILS, 2);
    assert.match(text, /^It stops at once, as if it crashed \(SIGKILL\)\./);
    assert.match(text, /No other live worker can run payment \(it needs tags: payments\): those steps of its 4 tasks wait until a worker that can joins; the rest move to other workers\.$/);
    assert.doesNotMatch(text, /moves its 4 tasks/);
  });

  it('says its tasks wait when no other worker is alive', () => {
    const only = worker('w-1', { queued: 5 });
    assert.match(killMessage(only, [only, worker('w-2', { status: 'dead' })], DETAILS, 2),
      /it is the only live worker, so its 5 tasks and every new one wait until a worker joins\.$/);
  });

  it('counts a worker without the step\'s handler as unable to run it', () => {
    const a = worker('p-1', { tags: ['payments'], steps: ['payment'] });
    const b = worker('p-2', { tags: ['payments'], steps: ['packing'] });
    assert.deepEqual(stepsOnlyItRuns(a, [a, b], DETAILS).map((s) => s.name), ['payment']);
  });
});

describe('the definitions a worker card says it offers', () => {
  it('lists each workflow@version of its app, in the order the server gives', () => {
    assert.equal(offeredText(['checkout@v1', 'refund@v1']), 'checkout@v1, refund@v1');
  });
  it('says any for a worker without an app, and none for an app without workflows', () => {
    assert.equal(offeredText(null), 'any');
    assert.equal(offeredText(undefined), 'any');
    assert.equal(offeredText([]), 'none');
  });
});
