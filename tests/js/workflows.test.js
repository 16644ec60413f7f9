// Workflows on the page (static/js/workflows.js): a DAG laid out in levels, the lines between
// its boxes, a step's policy in words and the submit forms' choice.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { chooseWorkflow, dagGeometry, layoutDag, policyParts, workflowShape } from '../../static/js/workflows.js';
import { WORKFLOWS } from './fixtures.js';

describe('laying out a DAG in levels', () => {
  it('puts a chain one step per level', () => {
    const layout = layoutDag(WORKFLOWS.ecommerce);
    assert.deepEqual(layout.levels, [['payment'], ['packing'], ['shipping']]);
    assert.deepEqual(layout.edges, [{ from: 'payment', to: 'packing' }, { from: 'packing', to: 'shipping' }]);
  });

  it('puts the branches of a fan-out side by side and the fan-in below both', () => {
    const layout = layoutDag(WORKFLOWS.ecommerce_invoiced);
    assert.deepEqual(layout.levels, [['payment'], ['packing', 'invoice'], ['shipping']]);
    assert.deepEqual(layout.level, { payment: 0, packing: 1, invoice: 1, shipping: 2 });
    assert.deepEqual(layout.index, { payment: 0, packing: 0, invoice: 1, shipping: 0 });
    assert.deepEqual(layout.edges.filter((e) => e.to === 'shipping').map((e) => e.from), ['packing', 'invoice']);
    assert.equal(layout.edges.length, 4);
  });

  it('takes the API list form as well as a mapping, in any order', () => {
    const steps = [
      { name: 'shipping', deps: ['packing', 'invoice'] },
      { name: 'invoice', deps: ['payment'] },
      { name: 'packing', deps: ['payment'] },
      { name: 'payment', deps: [] },
    ];
    assert.deepEqual(layoutDag(steps).levels, [['payment'], ['invoice', 'packing'], ['shipping']]);
  });

  it('places a step below the deepest step it waits for, not the first', () => {
    // d waits for a (level 0) and c (level 2): it goes to level 3.
    const layout = layoutDag({ a: [], b: ['a'], c: ['b'], d: ['a', 'c'] });
    assert.deepEqual(layout.level, { a: 0, b: 1, c: 2, d: 3 });
  });

  it('orders a level by where the steps it waits for stand, so lines cross less', () => {
    // x and y fan out from the root; q waits for y (right), p for x (left): p comes first
    // although q was declared first.
    const layout = layoutDag({ r: [], x: ['r'], y: ['r'], q: ['y'], p: ['x'] });
    assert.deepEqual(layout.levels, [['r'], ['x', 'y'], ['p', 'q']]);
  });

  it('ignores unknown dependencies and keeps steps caught in a cycle', () => {
    const layout = layoutDag({ a: ['ghost'], b: ['c'], c: ['b'] });
    assert.deepEqual(layout.levels, [['a'], ['b', 'c']]);
    assert.equal(layout.edges.length, 2);
  });

  it('lays out nothing for an unknown workflow', () => {
    assert.deepEqual(layoutDag(undefined).levels, []);
    assert.equal(dagGeometry(layoutDag({})).height, 0);
  });
});

describe('the geometry of a DAG', () => {
  it('centres each box in its share of its level and runs lines bottom to top', () => {
    const geo = dagGeometry(layoutDag(WORKFLOWS.ecommerce_invoiced), { box: 50, gap: 30 });
    assert.deepEqual(geo.centre, {
      payment: { x: 50, top: 0 }, packing: { x: 25, top: 80 }, invoice: { x: 75, top: 80 }, shipping: { x: 50, top: 160 },
    });
    assert.equal(geo.height, 210);
    const toInvoice = geo.lines.find((l) => l.from === 'payment' && l.to === 'invoice');
    assert.equal(toInvoice.d, 'M 50 50 C 50 65 75 65 75 80');
    assert.equal(geo.lines.length, 4);
  });
});

describe('a step policy in words', () => {
  it('names every setting a step declares', () => {
    const step = { retries: 4, backoff: [0.5, 8], timeout: 10, max_in_flight: 50, rate: 100, burst: 20, tags: ['eu', 'payments'], async: true };
    assert.deepEqual(policyParts(step),
      ['4 retries', 'backoff 500 ms–8 s', 'timeout 10 s', '≤ 50 at once', '≤ 100/s (bursts of 20)', 'on eu, payments', 'async']);
  });

  it('says nothing for the server defaults and "no retries" for zero', () => {
    assert.deepEqual(policyParts({ retries: null, timeout: null, max_in_flight: null, rate: null, tags: [] }), []);
    assert.deepEqual(policyParts({ retries: 0, timeout: 0.25 }), ['no retries', 'timeout 250 ms']);
    assert.deepEqual(policyParts({ retries: 1 }), ['1 retry']);
    assert.deepEqual(policyParts(undefined), []);
  });
});

describe('the submit forms', () => {
  it('describe a workflow by its levels', () => {
    const steps = Object.entries(WORKFLOWS.ecommerce_invoiced).map(([name, deps]) => ({ name, deps }));
    assert.equal(workflowShape({ name: 'ecommerce_invoiced', steps }), 'payment → packing + invoice → shipping');
  });

  it('keep the chosen workflow while the server offers it, else take the first', () => {
    assert.equal(chooseWorkflow(['a', 'b'], 'b'), 'b');
    assert.equal(chooseWorkflow(['a', 'c'], 'b'), 'a');
    assert.equal(chooseWorkflow(['a'], ''), 'a');
    assert.equal(chooseWorkflow([], 'b'), '');
  });
});
