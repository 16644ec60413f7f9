// The browser handles only events the server emits. EVENT_TYPES in static/js/states.js is the
// page's list (tests/test_browser_contract.py checks it against the server's); here every
// place that names an event type is checked against that list.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { ON_EVENT } from '../../static/js/orders.js';
import { EVENT_LABEL, EVENT_TYPES, eventTone, LOG_GROUP_OF, LOG_GROUPS } from '../../static/js/states.js';

const JS_ROOT = fileURLToPath(new URL('../../static/js/', import.meta.url));
const KNOWN = new Set(EVENT_TYPES);
// Looks like an event type: a quoted order_/task_/worker_/result_ word.
const LITERAL = /['"`]((?:order|task|worker|result)_[a-z_]+)['"`]/g;

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.js') ? [path] : [];
  });
}

const unknown = (types) => [...types].filter((t) => !KNOWN.has(t));

describe('event types', () => {
  it('are listed once each', () => {
    assert.equal(KNOWN.size, EVENT_TYPES.length);
    assert.ok(Object.isFrozen(EVENT_TYPES));
  });

  it('the order book handles are all known', () => {
    assert.deepEqual(unknown(Object.keys(ON_EVENT)), []);
  });

  it('the log groups and labels name are all known, and every logged type has a label', () => {
    assert.deepEqual(unknown(Object.keys(EVENT_LABEL)), []);
    assert.deepEqual(unknown(Object.values(LOG_GROUPS).flatMap((g) => g.types)), []);
    for (const type of Object.keys(LOG_GROUP_OF)) assert.ok(EVENT_LABEL[type], type);
  });

  it('written anywhere in the page\'s code are all known', () => {
    const found = new Map();
    for (const file of sources(JS_ROOT)) {
      for (const [, type] of readFileSync(file, 'utf8').matchAll(LITERAL)) found.set(type, file);
    }
    assert.ok(found.size >= 10, 'the scan finds the types the modules name');
    assert.deepEqual(unknown(found.keys()).map((t) => `${t} in ${found.get(t)}`), []);
  });

  it('without a tone of their own read as info', () => {
    assert.equal(eventTone('task_failed'), 'bad');
    assert.equal(eventTone('task_reassigned'), 'move');
    assert.equal(eventTone('order_submitted'), 'info');
  });
});
