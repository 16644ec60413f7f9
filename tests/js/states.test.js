// How states look (static/js/states.js): words and glyphs besides colour, stable worker colours.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { orderStatus, taskState, TERMINAL, workerColour, workerStatus } from '../../static/js/states.js';

describe('states', () => {
  it('show ready and assigned alike, as queued', () => {
    assert.equal(taskState('ready').label, 'queued');
    assert.deepEqual(taskState('assigned'), taskState('ready'));
    assert.equal(taskState('retry_wait').label, 'retry');
  });

  it('unknown to the page still show their own word', () => {
    assert.deepEqual(taskState('paused'), { label: 'paused', glyph: '?', cls: 's-pending' });
    assert.equal(orderStatus('archived').label, 'archived');
    assert.equal(workerStatus('lost').cls, 'w-removed');
  });

  it('that end an order are completed, failed and cancelled', () => {
    assert.deepEqual([...TERMINAL].sort(), ['cancelled', 'completed', 'failed']);
  });
});

describe('worker colours', () => {
  it('follow the worker number, so w-1 and w-9 share a colour and w-2 differs', () => {
    assert.equal(workerColour('w-1'), workerColour('w-9'));
    assert.notEqual(workerColour('w-1'), workerColour('w-2'));
  });

  it('for names without a number are stable', () => {
    assert.equal(workerColour('edge'), workerColour('edge'));
    assert.match(workerColour('edge'), /^#[0-9A-F]{6}$/);
  });
});
