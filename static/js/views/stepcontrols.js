// Step controls: one row per step with its state (running, or paused: by whom, since when,
// why; the reason its waiting tasks show), a Pause/Resume button behind a confirmation,
// and its limits (max in flight, starts/s) editable while it runs. Read from GET /api/steps
// when the paused steps of the stats change (a breaker trips, another operator acts), after
// each command, and every few seconds; every text is set with textContent.

import { api } from '../api.js';
import { fmtInt, h, setText } from '../dom.js';
import { KeyedRows } from './keyed.js';

const REFRESH_MS = 5000;

/** What the stats say is paused, as one string: a change means the rows must be read again. */
export function pausedSignature(paused) {
  return Object.entries(paused || {}).map(([step, p]) => `${step}:${p.who}:${p.since}`).sort().join('|');
}

/** A limit as the input shows it: '' for none. */
export const limitText = (value) => (value === null || value === undefined ? '' : String(value));

/** The body of PUT /api/steps/{step}/limits from the inputs' text: '' (or 0) removes a limit. */
export function limitsBody(maxText, rateText) {
  return {
    max_in_flight: maxText.trim() === '' ? 0 : Number(maxText),
    rate: rateText.trim() === '' ? 0 : Number(rateText),
  };
}

export class StepControls {
  /** root: the table body; deps: {confirm, toast} */
  constructor(root, { confirm, toast }) {
    this.root = root;
    this.confirm = confirm;
    this.toast = toast;
    this.rows = new KeyedRows(root, (name) => this._row(name));
    this.signature = null;
    this.loading = false;
    this.lastLoad = 0;
  }

  /** Called with each stats update: reads the steps again when their pauses changed. */
  noteStats(stats) {
    const signature = pausedSignature(stats?.paused);
    if (signature !== this.signature || Date.now() - this.lastLoad > REFRESH_MS) {
      this.signature = signature;
      this.load();
    }
  }

  async load() {
    if (this.loading) return;
    this.loading = true;
    this.lastLoad = Date.now();
    try {
      const data = await api('/api/steps');
      this.render(data.steps);
    } catch (err) {
      this.toast(`Could not read the steps: ${err.message}`, 'bad');
    } finally {
      this.loading = false;
    }
  }

  _row(name) {
    const row = {
      el: h('tr', { class: 'step-control', dataset: { step: name } }),
      name: h('td', { class: 'sc-name', text: name }),
      state: h('div', { class: 'sc-state' }),
      counts: h('td', { class: 'sc-counts num small muted' }),
      max: h('input', { type: 'number', min: '0', step: '1', class: 'w-num sc-max', 'aria-label': `${name}: at most in flight (empty: no limit)`, placeholder: 'none' }),
      rate: h('input', { type: 'number', min: '0', step: 'any', class: 'w-num sc-rate', 'aria-label': `${name}: starts per second (empty: no limit)`, placeholder: 'none' }),
      save: h('button', { type: 'button', class: 'btn sc-save', text: 'Set limits' }),
      toggle: h('button', { type: 'button', class: 'btn sc-toggle' }),
      view: null,
    };
    row.save.addEventListener('click', () => this._setLimits(row));
    row.toggle.addEventListener('click', () => this._toggle(row));
    row.el.append(row.name, h('td', {}, row.state), row.counts,
      h('td', {}, row.max), h('td', {}, row.rate), h('td', {}, row.save, row.toggle));
    return row;
  }

  render(steps) {
    // Paused steps first: the one an operator is dealing with stays in view.
    const ordered = [...(steps || [])].sort((a, b) => Boolean(b.paused) - Boolean(a.paused));
    this.rows.render(ordered, (view) => view.name, (row, view) => {
      const paused = view.paused;
      row.view = view;
      row.el.classList.toggle('paused', Boolean(paused));
      setText(row.state, paused ? paused.reason : `running${view.breaker ? ' (circuit breaker on)' : ''}`);
      row.state.title = paused ? paused.reason : '';
      setText(row.counts, `${fmtInt(view.in_flight)} in flight · ${fmtInt(view.ready)} ready`);
      setText(row.toggle, paused ? 'Resume' : 'Pause');
      row.toggle.className = paused ? 'btn btn-primary sc-toggle' : 'btn btn-danger sc-toggle';
      // An input being edited keeps what the operator typed.
      if (document.activeElement !== row.max) row.max.value = limitText(view.max_in_flight);
      if (document.activeElement !== row.rate) row.rate.value = limitText(view.rate);
    });
  }

  async _toggle(row) {
    const { name, paused } = row.view;
    const ok = await this.confirm.ask(paused ? {
      title: `Resume ${name}?`,
      message: `Its ${fmtInt(row.view.ready)} waiting task(s) go back in line at once.`,
      confirm: `Resume ${name}`, tone: 'primary',
    } : {
      title: `Pause ${name}?`,
      message: `Its ready tasks wait (retries too, without spending an attempt) until it is resumed; attempts already running finish.`,
      confirm: `Pause ${name}`,
    });
    if (!ok) return;
    try {
      const view = await api(`/api/steps/${encodeURIComponent(name)}/${paused ? 'resume' : 'pause'}`, { method: 'POST', body: {} });
      this.toast(view.paused ? `${name} paused` : `${name} resumed`, 'good');
    } catch (err) {
      this.toast(err.message, 'bad');
    }
    this.load();
  }

  async _setLimits(row) {
    const { name } = row.view;
    try {
      const view = await api(`/api/steps/${encodeURIComponent(name)}/limits`, {
        method: 'PUT', body: limitsBody(row.max.value, row.rate.value),
      });
      this.toast(`${name}: at most ${view.max_in_flight ?? 'any'} in flight, ${view.rate ?? 'any'} starts/s`, 'good');
    } catch (err) {
      this.toast(err.message, 'bad');
    }
    row.max.blur();
    row.rate.blur();
    this.load();
  }
}
