// How states look (static/js/states.js): words and glyphs besides colour, stable worker colours.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { orderStage, orderStatus, serverRole, taskState, TERMINAL, workerColour, workerStatus } from '../../static/js/states.js';

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

  it('that end an order are completed, failed, cancelled and a saga\'s two ends', () => {
    assert.deepEqual([...TERMINAL].sort(),
      ['cancelled', 'compensated', 'compensation_failed', 'completed', 'failed']);
    assert.equal(orderStatus('compensating').label, 'compensating');
    assert.equal(orderStatus('compensation_failed').cls, 's-failed');
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

describe('serverRole', () => {
  const base = { leader: 'http://10.0.0.5:5000', leader_name: 'b', server: 'http://10.0.0.4:5000' };

  it('says nothing for a server alone on its journal', () => {
    assert.equal(serverRole({ role: 'leader', epoch: null, leader: null }), null);
    assert.equal(serverRole(undefined), null);
  });

  it('says this server leads, with its epoch', () => {
    const role = serverRole({ ...base, role: 'leader', epoch: 7 });
    assert.equal(role.text, 'leads · epoch 7');
    assert.equal(role.href, null);
  });

  it('names the leader a standby defers to, linked when it is a web address', () => {
    const role = serverRole({ ...base, role: 'standby', epoch: 3 });
    assert.equal(role.text, 'standby · leader: b · epoch 3');
    assert.equal(role.href, 'http://10.0.0.5:5000');
    assert.equal(serverRole({ ...base, role: 'standby', epoch: 3, leader: 'javascript:alert(1)' }).href, null);
    assert.match(serverRole({ role: 'standby', epoch: 0, leader: null }).text, /leader: none yet/);
  });

  it('says a freshly elected server is taking over', () => {
    assert.match(serverRole({ ...base, role: 'starting', epoch: 4 }).text, /^taking over/);
  });
});

describe('the stage of a waiting order', () => {
  it('is waiting only while a step waits and none is queued or running', () => {
    assert.equal(orderStage('waiting', { a: { status: 'succeeded' }, b: { status: 'waiting' }, c: { status: 'pending' } }), 'waiting');
    assert.equal(orderStage('in_progress', { a: { status: 'waiting' }, b: { status: 'ready' } }), 'queued');
    assert.equal(orderStage('in_progress', { a: { status: 'waiting' }, b: { status: 'retry_wait' } }), 'retrying');
    assert.equal(orderStage('in_progress', { a: { status: 'waiting' }, b: { status: 'running' } }), 'running');
    assert.equal(orderStage('cancelled', { a: { status: 'waiting' } }), 'cancelled');
  });
});
