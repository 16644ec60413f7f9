// Rows (table rows, cards, banners) keyed by a name, built once and then updated in place, in
// the order of the latest list: what every panel that redraws a list a few times a second
// needs, so that a row keeps its element (a hovered card, an input being typed in) between
// updates.

export class KeyedRows {
  /** root: their container; make(key, item): a new row, an object whose element is `el`. */
  constructor(root, make) {
    this.root = root;
    this.make = make;
    this.rows = new Map();
  }

  /** One row per item of `items`, in that order (those it lacks built with `make`), each
   *  passed to `update(row, item)`; the rows of keys no longer listed are removed. */
  render(items, keyOf, update) {
    const seen = new Set();
    items.forEach((item, index) => {
      const key = keyOf(item);
      seen.add(key);
      let row = this.rows.get(key);
      if (!row) {
        row = this.make(key, item);
        this.rows.set(key, row);
      }
      // Moved only when out of place: moving an element takes the focus from an input in it.
      if (this.root.children[index] !== row.el) this.root.insertBefore(row.el, this.root.children[index] || null);
      update(row, item);
    });
    for (const [key, row] of this.rows) {
      if (!seen.has(key)) {
        row.el.remove();
        this.rows.delete(key);
      }
    }
  }

  get size() {
    return this.rows.size;
  }
}
