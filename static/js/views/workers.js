// Worker cards: status, kind, current task, counts, heartbeat age and ring share, with Kill
// and Drain. Cards are keyed by worker id and updated in place (two messages a second).

import { fmtInt, fmtPct, h, plural, setClass, setText } from '../dom.js';
import { workerColour, workerStatus } from '../states.js';
import { stepsOnlyItRuns } from '../workflows.js';
import { KeyedRows } from './keyed.js';

const CAN_KILL = new Set(['alive', 'suspect', 'draining']);
const CAN_DRAIN = new Set(['alive', 'suspect']);

/** What killing `worker` does, said before it is done: where its tasks go, and which would
 *  have nowhere to go (steps no other live worker can run wait until one joins). */
export function killMessage(worker, workers, details, timeout) {
  const held = (worker.busy ?? 0) + (worker.queued ?? 0);
  const crash = `It stops at once, as if it crashed${worker.kind === 'process' ? ' (SIGKILL)' : ''}. `
    + `The cluster notices within about ${timeout ?? '?'} s (the heartbeat timeout)`;
  const others = workers.some((w) => w.id !== worker.id && (w.status === 'alive' || w.status === 'suspect'));
  if (!others) {
    return `${crash}; it is the only live worker, so its ${plural(held, 'task')} and every new one `
      + 'wait until a worker joins.';
  }
  const only = stepsOnlyItRuns(worker, workers, details);
  if (only.length) {
    const names = only.map((s) => (s.tags.length ? `${s.name} (it needs tags: ${s.tags.join(', ')})` : s.name));
    return `${crash}. No other live worker can run ${names.join(' or ')}: those steps of its `
      + `${plural(held, 'task')} wait until a worker that can joins; the rest move to other workers.`;
  }
  return `${crash} and moves its ${plural(held, 'task')} to other workers; a step it was running runs again elsewhere.`;
}

/** The workflow definitions (workflow@version) a worker offers, as its card says them:
 *  "any" for a worker without an app (it takes a step of any definition it has a handler for). */
export function offeredText(definitions) {
  if (definitions === null || definitions === undefined) return 'any';
  return definitions.length ? definitions.join(', ') : 'none';
}

export class WorkersView {
  /** actions: {kill(id), drain(id), openOrder(orderId), hover(id|null)} */
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.cards = new KeyedRows(root, (id, worker) => this._card(worker));
    root.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-action]');
      const card = event.target.closest('[data-worker]');
      if (!card) return;
      const id = card.dataset.worker;
      if (button && !button.disabled) {
        if (button.dataset.action === 'kill') actions.kill(id, button);
        else if (button.dataset.action === 'drain') actions.drain(id, button);
      } else if (event.target.closest('.worker-task[data-order]')) {
        actions.openOrder(event.target.closest('.worker-task').dataset.order);
      }
    });
    root.addEventListener('mouseover', (event) => {
      const card = event.target.closest('[data-worker]');
      actions.hover(card ? card.dataset.worker : null);
    });
    root.addEventListener('mouseleave', () => actions.hover(null));
  }

  _card(worker) {
    const swatch = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    swatch.style.background = workerColour(worker.id);
    const parts = {
      status: h('span', { class: 'badge' }),
      kind: h('span', { class: 'worker-kind' }),
      task: h('span', { class: 'worker-task' }),
      done: h('b'),
      failed: h('b'),
      queued: h('b'),
      slots: h('b', { class: 'worker-slots' }),
      slotBusy: h('span', { class: 'slot-busy' }),
      slotStuck: h('span', { class: 'slot-stuck' }),
      stuck: h('span', { class: 'worker-stuck' }),
      hbFill: h('span', { class: 'hb-fill' }),
      hbText: h('span', { class: 'hb-text' }),
      share: h('span', { class: 'worker-share' }),
      defs: h('span', { class: 'worker-defs' }),
      kill: h('button', { type: 'button', class: 'btn btn-danger btn-sm', dataset: { action: 'kill' }, text: 'Kill' }),
      drain: h('button', { type: 'button', class: 'btn btn-sm', dataset: { action: 'drain' }, text: 'Drain' }),
    };
    const hb = h('div', { class: 'hb', role: 'meter', 'aria-label': `heartbeat age of ${worker.id}`, 'aria-valuemin': '0' }, parts.hbFill);
    parts.hb = hb;
    parts.load = h('span', { class: 'worker-load' },
      h('span', { class: 'slot-bar', 'aria-hidden': 'true' }, parts.slotBusy, parts.slotStuck), parts.slots, parts.stuck);
    // Three lines, so five cards stay whole at 1440 × 900: its id and buttons; what it does;
    // what it is (the definitions it offers, kind, host, tags, ring share: cut first, its
    // title holds it whole) beside its heartbeat. A process worker's "process · host:pid ·
    // tags payments" beside its id would push Drain and Kill out of the card (at 1440 × 900
    // and on a phone). The definitions come first: in a rolling deploy they say which
    // workers still run the old version.
    parts.what = h('span', { class: 'worker-what' }, parts.defs, h('span', { text: ' · ' }), parts.kind, parts.share);
    parts.el = h('article', { class: 'worker', dataset: { worker: worker.id } },
      h('div', { class: 'worker-line' },
        swatch, h('span', { class: 'worker-id', text: worker.id, title: worker.id }), parts.status,
        h('span', { class: 'spacer' }), parts.drain, parts.kill),
      h('div', { class: 'worker-line worker-sub worker-work' },
        h('span', { class: 'worker-now' }, parts.task),
        parts.load,
        h('span', { class: 'worker-counts' },
          parts.done, h('span', { text: ' done · ' }), parts.failed, h('span', { text: ' failed · ' }),
          parts.queued, h('span', { text: ' queued' }))),
      h('div', { class: 'worker-line worker-sub' }, parts.what, hb, parts.hbText));
    return parts;
  }

  render(workers, config) {
    this.cards.render(workers, (worker) => worker.id, (card, worker) => this._update(card, worker, config));
  }

  _update(card, w, config) {
    const st = workerStatus(w.status);
    const stuck = w.stuck ?? 0;
    // Threads left to handlers that ignored their cancellation: a new thread took each one's
    // slot, so they take no slot, but they are still there.
    const abandoned = w.abandoned ?? 0;
    setClass(card.el, `worker ${st.cls}${stuck || abandoned ? ' has-stuck' : ''}`);
    setText(card.status, `${st.glyph} ${st.label}`);
    setClass(card.status, `badge ${st.cls}`);
    const where = w.host ? ` · ${w.host}${w.pid ? `:${w.pid}` : ''}` : '';
    // What it can run: the tags it offers (routing by capability).
    const tags = (w.tags || []).length ? ` · tags ${w.tags.join(', ')}` : '';
    setText(card.kind, `${w.kind || 'thread'}${where}${tags}`);
    // What it may run: the workflow definitions of its app (workflow@version), or any.
    setText(card.defs, offeredText(w.definitions));
    card.defs.dataset.any = String(w.definitions === null || w.definitions === undefined);
    if (w.current_task) {
      const [orderId, step] = String(w.current_task).split(':');
      setText(card.task, step ? `▶ ${step} · ${orderId}` : orderId);
      card.task.dataset.order = orderId;
      setClass(card.task, 'worker-task link');
    } else {
      setText(card.task, w.status === 'dead' || w.status === 'removed' ? '—' : 'idle');
      delete card.task.dataset.order;
      setClass(card.task, 'worker-task muted');
    }
    setText(card.done, fmtInt(w.tasks_done));
    setText(card.failed, fmtInt(w.tasks_failed));
    setText(card.queued, fmtInt(w.queued));
    // Slots in use of its capacity; a timed-out handler that has not returned holds its slot
    // (stuck: hatched in the bar, a badge on the card) until it returns.
    const slots = Math.max(1, w.slots ?? 1);
    const busy = w.busy ?? 0;
    setText(card.slots, `${fmtInt(busy + stuck)}/${fmtInt(slots)} slots`);
    card.slotBusy.style.width = `${Math.min(100, (busy / slots) * 100).toFixed(1)}%`;
    card.slotStuck.style.width = `${Math.min(100, (stuck / slots) * 100).toFixed(1)}%`;
    const flags = [];
    if (stuck) flags.push(`${fmtInt(stuck)} stuck`);
    if (abandoned) flags.push(`${fmtInt(abandoned)} abandoned`);
    setText(card.stuck, flags.length ? `⚠ ${flags.join(' · ')}` : '');
    card.load.title = (stuck
      ? `${fmtInt(busy)} running and ${fmtInt(stuck)} stuck (timed out, not returned yet) of ${fmtInt(slots)} slots`
      : `${fmtInt(busy)} running of ${fmtInt(slots)} slots`)
      + (abandoned ? `; ${fmtInt(abandoned)} threads abandoned to handlers that ignored their cancellation (each slot serves again on a new thread)` : '');
    // Heartbeat age against the timeout: amber once suspect (two missed beats), red near death.
    const timeout = config.heartbeat_timeout;
    const gone = w.status === 'dead' || w.status === 'removed';
    const age = w.heartbeat_age ?? 0;
    const fraction = gone ? 1 : Math.min(1, age / timeout);
    let level = 'ok';
    if (w.status === 'removed') level = 'off'; // left on purpose: nothing alarming
    else if (gone || fraction >= 0.75) level = 'bad';
    else if (age > 2 * config.heartbeat_interval || fraction >= 0.5) level = 'warn';
    card.hbFill.style.width = `${(fraction * 100).toFixed(1)}%`;
    setClass(card.hbFill, `hb-fill hb-${level}`);
    card.hb.setAttribute('aria-valuenow', String(age));
    card.hb.setAttribute('aria-valuemax', String(timeout));
    setText(card.hbText, gone ? 'beat stopped' : `beat ${age.toFixed(2)} s / ${timeout} s`);
    card.hb.title = `last heartbeat ${age.toFixed(2)} s ago; declared dead after ${timeout} s`;
    setText(card.share, w.share ? ` · ring ${fmtPct(w.share)}` : ' · off ring');
    card.what.title = `offers ${w.definitions ? offeredText(w.definitions) : 'any workflow definition (a worker without an app)'}`
      + ` · ${card.kind.textContent}${card.share.textContent}`;
    card.kill.disabled = !CAN_KILL.has(w.status);
    card.drain.disabled = !CAN_DRAIN.has(w.status);
  }
}
