// One order's timeline (GET /api/orders/<id>): what was ordered (its lines and total), its
// workflow drawn as a DAG with each step's state and why a ready step waits, its steps with
// their policies, moves and full errors, each step's result and each failed attempt's error
// with its traceback (folded), and every event in order with workers, attempts, errors, moves
// (and their cause) and who did what. Refreshes while open as events arrive, and every second while a step waits (its
// reason may change without an event).
//
// The open order is in the page's address (#order=<id>): a reload reopens it, and the link
// can be shared. Back closes it again.

import { api } from '../api.js';
import { fmtClock, fmtDuration, fmtInt, h, setText, svg } from '../dom.js';
import { fmtMoney, oneLine, orderLines, raisedAt, resultText, stepAttempts } from '../orderdetail.js';
import { EVENT_LABEL, eventTone, orderStatus, taskState, TERMINAL } from '../states.js';
import { dagGeometry, layoutDag, policyParts } from '../workflows.js';

const REFRESH_MS = 250;
const WAITING_REFRESH_MS = 1000;
// The DAG's boxes (px): their height, the gap between levels, the narrowest a box's share of
// its level may get before the drawing scrolls sideways.
const DAG = { box: 54, gap: 30, minShare: 112 };
// Lines of an order drawn in its view (an order may have 1,000); the rest are counted.
const MAX_LINES_SHOWN = 100;

export class Timeline {
  /** els: {root, title, body, close}; toast(message, tone); workflow(name): the server's
   *  description of a workflow (steps, deps, policies) or null */
  constructor(els, toast, workflow = () => null, confirm = null) {
    this.els = els;
    this.toast = toast;
    this.workflow = workflow;
    this.confirm = confirm;
    this.orderId = null;
    this.timer = null;
    this.returnFocus = null;
    // The open order's signal forms, by "<order>\n<signal>" (see _signalForm).
    this.signalForms = new Map();
    els.close.addEventListener('click', () => this.close());
    els.link?.addEventListener('click', () => this.copyLink());
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.orderId && !document.querySelector('dialog[open]')) this.close();
    });
    // The address names the open order: follow it (a pasted link, Back and Forward).
    window.addEventListener('hashchange', () => this.followAddress());
  }

  /** The order named by the page's address (#order=<id>), or null. */
  static linked() {
    const match = /^#order=(.+)$/.exec(window.location.hash);
    if (!match) return null;
    try {
      return decodeURIComponent(match[1]) || null;
    } catch {
      return null;
    }
  }

  /** Open or close as the address says. */
  followAddress() {
    const id = Timeline.linked();
    if (id && id !== this.orderId) this.open(id);
    else if (!id && this.orderId) this.close();
  }

  async open(orderId) {
    if (this.orderId !== orderId) {
      this.returnFocus = document.activeElement;
      this.signalForms.clear();
    }
    this.orderId = orderId;
    this.els.root.hidden = false;
    this.els.root.dataset.order = orderId;
    setText(this.els.title, orderId);
    // One history entry per visit to an order (switching orders replaces it), so Back
    // returns to the page as it was.
    const hash = `#order=${encodeURIComponent(orderId)}`;
    if (window.location.hash !== hash) {
      if (Timeline.linked()) window.history.replaceState(null, '', hash);
      else window.history.pushState(null, '', hash);
    }
    this.els.body.replaceChildren(h('p', { class: 'muted pad', text: 'Loading…' }));
    this.els.close.focus();
    await this.load();
  }

  close() {
    this.orderId = null;
    this.signalForms.clear();
    clearTimeout(this.timer);
    this.timer = null;
    this.els.root.hidden = true;
    delete this.els.root.dataset.order;
    if (Timeline.linked()) {
      window.history.replaceState(null, '', window.location.pathname + window.location.search);
    }
    this.returnFocus?.focus?.();
  }

  /** Put the open order's address on the clipboard (where the browser allows it). */
  async copyLink() {
    try {
      await navigator.clipboard.writeText(window.location.href);
      this.toast('Link to this order copied', 'good');
    } catch {
      this.toast(`Link: ${window.location.href}`, 'info');
    }
  }

  /** A stream event arrived; refresh soon if it is about the open order. */
  onEvent(ev) {
    if (ev.order_id === this.orderId) this._refreshIn(REFRESH_MS);
  }

  /** Reload within `ms` (an earlier reload already due stands). */
  _refreshIn(ms) {
    const due = performance.now() + ms;
    if (this.timer && this.due <= due) return;
    clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.load();
    }, ms);
  }

  async load() {
    const id = this.orderId;
    if (!id) return;
    let order;
    try {
      order = await api(`/api/orders/${encodeURIComponent(id)}`);
    } catch (err) {
      if (this.orderId !== id) return;
      this.els.body.replaceChildren(h('p', { class: 'pad error-text', text: err.status === 404 ? `No order ${id} on the server.` : err.message }));
      return;
    }
    if (this.orderId !== id) return; // closed or switched meanwhile
    const keepScroll = this.els.body.scrollTop;
    // What the reader unfolded (a traceback, a result) stays unfolded through refreshes.
    const unfolded = new Set([...this.els.body.querySelectorAll('details[open]')].map((d) => d.dataset.fold));
    // A field being typed in (a signal's data) is put back as it was, focus and caret too.
    const focused = this.els.body.contains(document.activeElement) ? document.activeElement : null;
    const caret = focused?.tagName === 'TEXTAREA' ? [focused.selectionStart, focused.selectionEnd] : null;
    // The DAG of the definition the order is pinned to: the workflow of its name the server
    // runs now only if it is the same version (after a deploy it may have other steps).
    const current = this.workflow(order.workflow);
    const workflow = current && (current.version ?? '') === (order.version ?? '') ? current : null;
    this.els.body.replaceChildren(this._summary(order), this._waits(order), this._lines(order),
      this._dag(order, workflow),
      this._steps(order, workflow), this._attempts(order), this._events(order));
    for (const fold of this.els.body.querySelectorAll('details[data-fold]')) {
      if (unfolded.has(fold.dataset.fold)) fold.open = true;
    }
    // Forms of waits that are over go (a wait that comes back starts afresh).
    for (const [key, form] of this.signalForms) {
      if (!this.els.body.contains(form)) this.signalForms.delete(key);
    }
    if (focused && focused.isConnected && document.activeElement !== focused) {
      focused.focus({ preventScroll: true });
      if (caret) focused.setSelectionRange(...caret);
    }
    this.els.body.scrollTop = keepScroll;
    this.els.root.dataset.status = order.status;
    if (!TERMINAL.has(order.status) && Object.values(order.tasks || {}).some((t) => t.waiting_for)) {
      this._refreshIn(WAITING_REFRESH_MS);
    }
  }

  /** The order's workflow as a DAG: one row per level, lines from each step to those that
   *  wait for it, each box in its step's state colour with why a ready step waits. */
  _dag(order, workflow) {
    const tasks = order.tasks || {};
    // The server's description; without it (a snapshot not yet here), the order's own steps
    // in one row rather than a guessed chain.
    const steps = workflow ? workflow.steps : Object.keys(tasks).map((name) => ({ name, deps: [] }));
    const layout = layoutDag(steps);
    const geo = dagGeometry(layout, DAG);
    const widest = Math.max(1, ...layout.levels.map((row) => row.length));
    const lines = svg('svg', {
      class: 'dag-lines', viewBox: `0 0 100 ${geo.height}`, preserveAspectRatio: 'none', 'aria-hidden': 'true',
    }, geo.lines.map((line) => svg('path', {
      class: tasks[line.from]?.status === 'succeeded' ? 'dag-line done' : 'dag-line',
      d: line.d, dataset: { from: line.from, to: line.to },
    })));
    const rows = layout.levels.map((row, level) => {
      const el = h('div', { class: 'dag-level', dataset: { level: String(level) } },
        row.map((name) => this._dagNode(name, tasks[name], level)));
      el.style.top = `${level * (DAG.box + DAG.gap)}px`;
      el.style.height = `${DAG.box}px`;
      el.style.gridTemplateColumns = `repeat(${row.length}, minmax(0, 1fr))`;
      return el;
    });
    const drawing = h('div', { class: 'dag', role: 'group', 'aria-label': `Steps of ${order.workflow}, first at the top` }, lines, rows);
    drawing.style.height = `${geo.height}px`;
    drawing.style.minWidth = `${widest * DAG.minShare}px`;
    return h('section', { class: 'tl-dag' },
      h('h3', {}, 'Workflow ', h('span', { class: 'dag-name-of mono', text: order.workflow ?? '' })),
      h('div', { class: 'dag-scroll' }, drawing));
  }

  _dagNode(name, task, level) {
    const status = task?.status ?? 'pending';
    const ts = taskState(status);
    const state = [ts.label];
    if (task?.attempts > 1) state.push(`×${task.attempts}`);
    if (task?.worker && status !== 'pending' && status !== 'ready') state.push(task.worker);
    const why = task?.waiting_for ?? '';
    const title = [`${name}: ${ts.label}`];
    if (task?.attempts) title.push(`attempt ${task.attempts}`);
    if (task?.worker) title.push(`on ${task.worker}`);
    if (why) title.push(why);
    if (task?.error) title.push(`last error: ${task.error}`);
    return h('div', {
      class: `dag-node ${ts.cls}${why ? ' waiting' : ''}`, title: title.join(' · '),
      dataset: { step: name, status, level: String(level) },
    },
    h('div', { class: 'dag-top' }, h('span', { class: 'chip-glyph', 'aria-hidden': 'true', text: ts.glyph }), h('span', { class: 'dag-step', text: name })),
    h('div', { class: 'dag-state', text: state.join(' · ') }),
    h('div', { class: 'dag-why', text: why }));
  }

  _summary(order) {
    const st = orderStatus(order.status);
    const { lines, total, units } = orderLines(order.data);
    const took = order.finished_at ? fmtDuration(order.finished_at - order.submitted_at) : 'not finished';
    const field = (label, ...value) => h('div', { class: 'kv' }, h('dt', { text: label }), h('dd', {}, ...value));
    const actions = h('div', { class: 'tl-actions' });
    if (!TERMINAL.has(order.status)) actions.append(this._action(order.id, 'cancel', 'Cancel order'));
    if (order.status === 'failed') actions.append(this._action(order.id, 'retry', 'Retry from the failed step'));
    // A saga whose undo ran out of retries: only its undos run again.
    if (order.status === 'compensation_failed') actions.append(this._action(order.id, 'retry', 'Retry the undos'));
    return h('section', { class: 'tl-summary' },
      h('dl', { class: 'kv-grid' },
        field('Customer', h('span', { class: 'tl-customer', text: order.customer ?? '' })),
        field('Status', h('span', { class: `badge ${st.cls}`, text: `${st.glyph} ${st.label}` })),
        field('Workflow', order.workflow, order.priority ? h('span', { class: 'muted', text: ` · priority ${order.priority}` }) : null),
        field('Items', `${fmtInt(units)} unit${units === 1 ? '' : 's'} in ${fmtInt(lines.length)} line${lines.length === 1 ? '' : 's'} · total ${fmtMoney(total)}`),
        field('Submitted', fmtClock(order.submitted_at)),
        field('Took', took)),
      actions);
  }

  /** What its steps wait for and until when; for each wait, a form to deliver its signal
   *  by hand (the server records who sent it). Nothing while no step waits. */
  _waits(order) {
    const waits = Array.isArray(order.waits) ? order.waits : [];
    if (!waits.length) return h('section', { class: 'tl-waits', hidden: '' });
    const rows = waits.map((w) => {
      const until = w.until ? `until ${fmtClock(w.until)}` : 'no timeout';
      const row = h('div', { class: 'tl-wait', dataset: { step: w.step } },
        h('span', { class: 'tl-wait-what', text: `${w.step}: ${w.what ?? ''}` }),
        h('span', { class: 'muted', text: ` · ${until}` }));
      if (w.signal) row.append(this._signalForm(order.id, w.signal));
      return row;
    });
    return h('section', { class: 'tl-waits' }, h('h3', { text: 'Waiting for' }), rows);
  }

  /** The form that delivers the signal `name` to order `id` by hand: its data (JSON,
   *  optional) checked here first, then a confirmation that says what follows, then the
   *  server's answer. A refusal (not JSON, a wait that is over, a server that says no) is
   *  said under the form, as text, and nothing is sent or changed. One form per wait for as
   *  long as the order is open: the view reloads every second while it waits, and what the
   *  operator typed, the message shown and the focus must outlive those reloads. */
  _signalForm(id, name) {
    const key = `${id}\n${name}`;
    const kept = this.signalForms.get(key);
    if (kept) return kept;
    const data = h('textarea', { class: 'tl-signal-data mono', rows: '2', placeholder: 'data (JSON, optional)', 'aria-label': `Data of the signal ${name}` });
    const button = h('button', { type: 'submit', class: 'btn btn-sm', text: `Send signal ${name}` });
    const error = h('p', { class: 'tl-signal-error error-text small', role: 'alert', hidden: true });
    const form = h('form', { class: 'tl-signal', dataset: { signal: name } }, data, button, error);
    const say = (message) => {
      error.textContent = message;
      error.hidden = !message;
      if (message) data.setAttribute('aria-invalid', 'true');
      else data.removeAttribute('aria-invalid');
    };
    data.addEventListener('input', () => say(''));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      say('');
      let body = {};
      const text = data.value.trim();
      if (text) {
        try {
          body = { data: JSON.parse(text) };
        } catch (err) {
          say(`Not sent: the data is not JSON (${err.message}). Leave it empty to send none.`);
          data.focus();
          return;
        }
      }
      if (this.confirm && !(await this.confirm.ask({
        title: `Send ${name} to order ${id}?`,
        message: `Its wait for ${name} ends ${text ? 'with this data as its result' : 'with no data'}, and the steps after it run, as if the outside world had sent it. The order's events record that you sent it.`,
        confirm: `Send ${name}`, tone: 'primary',
      }))) return;
      button.disabled = true;
      try {
        const answer = await api(`/api/orders/${encodeURIComponent(id)}/signals/${encodeURIComponent(name)}`, { method: 'POST', body });
        this.signalForms.delete(key); // the wait is over (or its signal kept for it)
        this.toast(`Order ${id}: signal ${name} ${answer.outcome}`, 'good');
      } catch (err) {
        say(`Not delivered: ${err.message}`);
        // Said as a notice too: a wait that is over (another sender was first) takes its
        // form, and the words under it, away at the reload below.
        this.toast(`Order ${id}: signal ${name} not delivered: ${err.message}`, 'bad');
        button.disabled = false;
      }
      this.load();
    });
    this.signalForms.set(key, form);
    return form;
  }

  /** What was ordered: SKU, quantity, unit price and line total, then the order's total. */
  _lines(order) {
    const { lines, total } = orderLines(order.data);
    const shown = lines.slice(0, MAX_LINES_SHOWN);
    const num = (text) => h('td', { class: 'num', text });
    const rows = shown.map((line) => h('tr', {},
      h('td', { class: 'mono tl-sku', text: line.sku }), num(fmtInt(line.qty)), num(fmtMoney(line.price)), num(fmtMoney(line.total))));
    if (lines.length > shown.length) {
      rows.push(h('tr', { class: 'muted' }, h('td', { colspan: '4', text: `and ${fmtInt(lines.length - shown.length)} more lines (in the total below)` })));
    }
    return h('section', { class: 'tl-lines' },
      h('h3', { text: 'Ordered' }),
      h('div', { class: 'tl-steps-scroll' },
        h('table', { class: 'tl-items' },
          h('thead', {}, h('tr', {}, h('th', { text: 'SKU' }), ...['Qty', 'Price', 'Line total'].map((t) => h('th', { class: 'num', text: t })))),
          h('tbody', {}, rows),
          h('tfoot', {}, h('tr', {}, h('td', { colspan: '3', text: 'Total' }), num(fmtMoney(total)))))));
  }

  /** Each step's result, and each failed attempt's error with where it was raised and its
   *  traceback, folded (a traceback is the handler's text: shown as text, never markup). */
  _attempts(order) {
    const blocks = stepAttempts(order).map((s) => {
      const ts = taskState(s.status);
      const block = h('div', { class: 'tl-attempts-step', dataset: { step: s.step } },
        h('div', { class: 'tl-attempts-head' },
          h('span', { class: `chip ${ts.cls}` }, h('span', { class: 'chip-glyph', text: ts.glyph }), h('span', { class: 'chip-name', text: s.step }), h('span', { class: 'chip-state', text: ts.label }))));
      if (s.hasResult) {
        const text = resultText(s.result);
        block.append(h('details', { class: 'tl-fold tl-result', dataset: { fold: `result:${s.step}` } },
          h('summary', {}, h('span', { class: 'tl-fold-label', text: 'Result ' }), h('code', { class: 'tl-preview', text: oneLine(text) })),
          h('pre', { class: 'tl-pre', text })));
      } else if (s.failures.length === 0) {
        block.append(h('div', { class: 'muted small', text: s.attempts ? 'no result yet' : 'not started' }));
      }
      for (const f of s.failures) {
        const where = raisedAt(f.traceback);
        const head = h('div', { class: 'tl-failure-head' },
          h('span', { class: 'tl-failure-which', text: `Attempt ${f.attempt}${f.worker ? ` on ${f.worker}` : ''}` }),
          h('span', { class: 'tl-time num', title: fmtClock(f.ts), text: fmtClock(f.ts) }));
        const failure = h('div', { class: 'tl-failure', dataset: { attempt: String(f.attempt) } },
          head, h('div', { class: 'tl-error', text: f.error }));
        if (f.traceback) {
          const count = f.traceback.split('\n').length;
          failure.append(h('details', { class: 'tl-fold tl-trace', dataset: { fold: `trace:${f.seq}` } },
            h('summary', {}, h('span', { class: 'tl-fold-label', text: `Traceback (${fmtInt(count)} lines)` }),
              where ? h('span', { class: 'muted', text: ` · raised at ${where}` }) : null),
            h('pre', { class: 'tl-pre', text: f.traceback })));
        } else {
          failure.append(h('div', { class: 'muted small', text: 'no traceback (a TaskError, a time limit, a lost worker, or a result that is not JSON)' }));
        }
        block.append(failure);
      }
      return block;
    });
    return h('section', { class: 'tl-attempts' }, h('h3', { text: 'Results and failed attempts' }), blocks);
  }

  _action(id, action, label) {
    const button = h('button', { type: 'button', class: action === 'cancel' ? 'btn btn-danger btn-sm' : 'btn btn-sm', text: label });
    button.addEventListener('click', async () => {
      if (action === 'cancel' && this.confirm && !(await this.confirm.ask({
        title: `Cancel order ${id}?`,
        message: 'Its unfinished steps are cancelled; a step running now is told to stop. It cannot be resumed (a cancelled order is not retried).',
        confirm: 'Cancel the order',
      }))) return;
      button.disabled = true;
      try {
        await api(`/api/orders/${encodeURIComponent(id)}/${action}`, { method: 'POST' });
        this.toast(`Order ${id}: ${action === 'cancel' ? 'cancelled' : 'retrying'}`, 'good');
        this.load();
      } catch (err) {
        this.toast(err.message, 'bad');
        button.disabled = false;
      }
    });
    return button;
  }

  _steps(order, workflow) {
    const policies = Object.fromEntries((workflow?.steps || []).map((s) => [s.name, s]));
    const rows = Object.entries(order.tasks || {}).map(([step, t]) => {
      const ts = taskState(t.status);
      const policy = policyParts(policies[step]);
      // Moved: every time it was taken off a worker that died or drained (the event log's
      // moves); the deaths while it ran (its poison count) say so in the title.
      const moved = h('td', { class: 'num tl-moved', text: t.moves ? fmtInt(t.moves) : '–' });
      if (t.moves) moved.title = `moved ${fmtInt(t.moves)}× off a worker that died or drained; its worker died under it ${fmtInt(t.reassignments ?? 0)}× while it ran`;
      return h('tr', { dataset: { step } },
        h('td', {}, h('span', { class: `chip ${ts.cls}` }, h('span', { class: 'chip-glyph', text: ts.glyph }), h('span', { class: 'chip-name', text: step }), h('span', { class: 'chip-state', text: ts.label })),
          t.compensates ? h('span', { class: 'tl-undoes muted', text: ` ↶ undoes ${t.compensates}` }) : null),
        h('td', { class: 'num', text: fmtInt(t.attempts) }),
        h('td', { class: 'mono', text: t.worker ?? '–' }),
        moved,
        h('td', { class: 'tl-policy muted', text: policies[step] ? (policy.join(' · ') || 'defaults') : '' }),
        h('td', { class: 'tl-error', text: t.error ?? '' }));
    });
    return h('section', {},
      h('h3', { text: 'Steps' }),
      h('div', { class: 'tl-steps-scroll' },
        h('table', { class: 'tl-steps' },
          h('thead', {}, h('tr', {}, ...['Step', 'Attempts', 'Worker', 'Moved', 'Policy', 'Last error'].map((t) => h('th', { text: t })))),
          h('tbody', {}, rows))));
  }

  _events(order) {
    const events = order.events || [];
    const start = order.submitted_at || events[0]?.ts || 0;
    const list = h('ol', { class: 'tl-events' });
    for (const ev of events) {
      const where = [];
      if (ev.step) where.push(ev.step);
      if (ev.attempt) where.push(`attempt ${ev.attempt}`);
      if (ev.from_worker) where.push(`${ev.from_worker} → ${ev.worker_id ?? 'next free slot'}`);
      else if (ev.worker_id) where.push(ev.worker_id);
      if (ev.type === 'task_reassigned') where.push(ev.reason === 'drain' ? 'drained' : ev.reason);
      if (ev.type === 'operator_action') where.push(`by ${ev.who}`);
      if (ev.duration !== undefined && ev.duration !== null) where.push(fmtDuration(ev.duration));
      list.append(h('li', { class: `tl-event tone-${eventTone(ev.type)}`, dataset: { type: ev.type, seq: String(ev.seq) } },
        h('span', { class: 'tl-time num', title: fmtClock(ev.ts), text: `+${fmtDuration(ev.ts - start)}` }),
        h('span', { class: `ev-badge tone-${eventTone(ev.type)}`, text: EVENT_LABEL[ev.type] || ev.type }),
        h('span', { class: 'tl-where', text: where.join(' · ') }),
        h('span', { class: 'tl-message', text: ev.message })));
    }
    return h('section', {}, h('h3', { text: `Events (${fmtInt(events.length)})` }), list);
  }
}
