// Keyed rows (static/js/views/keyed.js): built once per key, kept in the list's order, moved
// only when out of place, removed when no longer listed. A few lines of fake DOM stand in for
// the container and its elements.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { KeyedRows } from '../../static/js/views/keyed.js';

class FakeRoot {
  constructor() {
    this.children = [];
    this.moves = 0;
  }

  insertBefore(el, before) {
    const at = this.children.indexOf(el);
    if (at >= 0) this.children.splice(at, 1);
    const index = before ? this.children.indexOf(before) : this.children.length;
    this.children.splice(index, 0, el);
    el.remove = () => this.children.splice(this.children.indexOf(el), 1);
    this.moves++;
  }
}

function panel() {
  const root = new FakeRoot();
  const made = [];
  const rows = new KeyedRows(root, (key, item) => {
    made.push(key);
    return { el: { key }, shown: null, first: item };
  });
  const show = (items) => rows.render(items, (item) => item.id, (row, item) => { row.shown = item.text; });
  return { root, rows, made, show };
}

const keys = (root) => root.children.map((el) => el.key);

describe('keyed rows', () => {
  it('builds a row once per key and updates it in place after', () => {
    const { root, rows, made, show } = panel();
    show([{ id: 'a', text: '1' }, { id: 'b', text: '2' }]);
    show([{ id: 'a', text: '3' }, { id: 'b', text: '4' }]);
    assert.deepEqual(made, ['a', 'b']);
    assert.deepEqual(keys(root), ['a', 'b']);
    assert.equal(rows.rows.get('a').shown, '3');
    assert.equal(rows.rows.get('a').first.text, '1'); // made from the item that first had its key
    assert.equal(root.moves, 2); // nothing moved on the second render
  });

  it('follows the order of the latest list and removes the keys no longer listed', () => {
    const { root, rows, made, show } = panel();
    show([{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
    show([{ id: 'c' }, { id: 'd' }, { id: 'a' }]);
    assert.deepEqual(keys(root), ['c', 'd', 'a']);
    assert.deepEqual(made, ['a', 'b', 'c', 'd']);
    assert.equal(rows.size, 3);
    show([]);
    assert.deepEqual(keys(root), []);
    assert.equal(rows.size, 0);
  });
});
