// The order search as the page holds it (static/js/search.js): its address, its question to
// the server, what the page matches itself, and what an empty table says was searched.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { apiQuery, describeSearch, emptySearch, isActive, matchesHeld, searchFromLocation, searchToLocation, toSeconds } from '../../static/js/search.js';

describe('a search as an address', () => {
  it('is written with only what is set, and read back the same', () => {
    const search = { q: 'BOOK-001', stage: 'failed', from: '2026-12-07T12:00', to: '2026-12-07T13:30:15' };
    const address = searchToLocation(search);
    assert.equal(address, '?q=BOOK-001&stage=failed&from=2026-12-07T12%3A00&to=2026-12-07T13%3A30%3A15');
    assert.deepEqual(searchFromLocation(address), search);
    assert.equal(searchToLocation(emptySearch()), '');
    assert.deepEqual(searchFromLocation(''), emptySearch());
  });

  it('keeps text with spaces and symbols whole', () => {
    const search = { ...emptySearch(), q: 'card declined & 50%' };
    assert.deepEqual(searchFromLocation(searchToLocation(search)), search);
  });

  it('leaves out what it cannot use and cuts the text to the server\'s length', () => {
    const read = searchFromLocation('?q=' + 'x'.repeat(40) + '&stage=lost&from=yesterday&to=2026-13-45T99:99');
    assert.deepEqual(read, { q: 'x'.repeat(32), stage: 'all', from: '', to: '' });
  });
});

describe('a search asked of the server', () => {
  it('sends the text, the time bounds in Unix seconds and a stage that is one status', () => {
    const search = { q: ' mug ', stage: 'failed', from: '2026-12-07T12:00', to: '' };
    const params = new URLSearchParams(apiQuery(search, 500));
    assert.equal(params.get('text'), 'mug');
    assert.equal(Number(params.get('since')), new Date('2026-12-07T12:00').getTime() / 1000);
    assert.equal(params.get('until'), null);
    assert.equal(params.get('status'), 'failed');
    assert.equal(params.get('limit'), '500');
  });

  it('leaves the stages of unfinished orders to the page', () => {
    const params = new URLSearchParams(apiQuery({ ...emptySearch(), q: 'x', stage: 'retrying' }, 10));
    assert.equal(params.get('status'), null);
  });

  it('is active with text or a time bound, not with a stage alone', () => {
    assert.equal(isActive({ ...emptySearch(), stage: 'failed' }), false);
    assert.equal(isActive({ ...emptySearch(), q: '  ' }), false);
    assert.equal(isActive({ ...emptySearch(), q: 'a' }), true);
    assert.equal(isActive({ ...emptySearch(), to: '2026-12-07T12:00' }), true);
  });
});

describe('the orders held that a search matches', () => {
  const at = toSeconds('2026-12-07T12:30');
  const rec = {
    id: 'o-abc123', customer: 'Ada', workflow: 'ecommerce_invoiced', submittedAt: at, skus: ['BOOK-001'],
    steps: ['payment', 'invoice'], tasks: { payment: { error: null }, invoice: { error: 'RuntimeError: PDF renderer crashed' } },
  };
  const search = (fields) => ({ ...emptySearch(), ...fields });

  it('by a part of the id, customer, workflow, a SKU or an error, in any case', () => {
    for (const q of ['abc1', 'ADA', 'invoiced', 'book-0', 'pdf renderer']) assert.equal(matchesHeld(rec, search({ q })), true, q);
    assert.equal(matchesHeld(rec, search({ q: 'zzz' })), false);
    assert.equal(matchesHeld({ ...rec, skus: undefined }, search({ q: 'book' })), false); // the server knows
  });

  it('by the time range, from included, to excluded', () => {
    assert.equal(matchesHeld(rec, search({ from: '2026-12-07T12:30' })), true);
    assert.equal(matchesHeld(rec, search({ to: '2026-12-07T12:30' })), false);
    assert.equal(matchesHeld(rec, search({ from: '2026-12-07T12:00', to: '2026-12-07T13:00' })), true);
  });
});

describe('what an empty table says was searched', () => {
  it('names the text, where it looked, the stage and the time range', () => {
    assert.equal(describeSearch({ q: 'BOOK-9', stage: 'failed', from: '2026-12-07T12:00', to: '2026-12-07T13:00' }, 'Failed'),
      '“BOOK-9” in an id, customer, SKU, error or workflow; failed only; submitted from 2026-12-07 12:00 to 2026-12-07 13:00');
    assert.equal(describeSearch({ ...emptySearch(), to: '2026-12-07T13:00' }, 'All'), 'submitted before 2026-12-07 13:00');
  });
});
