// Progress per step: for each step of the workflows, where the tasks of the unfinished
// orders stand (the server's stats.steps), as one stacked bar: done, running, retrying,
// queued (waiting for a slot) and waiting (for an earlier step). A burst reads as bars
// filling from the left, step after step.

import { fmtInt, h, setText } from '../dom.js';
import { KeyedRows } from './keyed.js';

/** The bar's parts, in the order drawn, each from the task states it sums. */
export const PARTS = [
  { key: 'done', label: 'done', states: ['succeeded'], cls: 's-done' },
  { key: 'running', label: 'running', states: ['running'], cls: 's-running' },
  { key: 'retrying', label: 'retrying', states: ['retry_wait'], cls: 's-retry' },
  { key: 'queued', label: 'queued', states: ['ready', 'assigned'], cls: 's-queued' },
  { key: 'waiting', label: 'waiting for an earlier step', states: ['pending'], cls: 's-pending' },
];

/** Steps in the order the workflows list them (each once), then any others by name. */
export function stepOrder(workflowDetails, steps) {
  const order = [];
  for (const workflow of workflowDetails || []) {
    for (const step of workflow.steps || []) if (!order.includes(step.name)) order.push(step.name);
  }
  for (const step of Object.keys(steps || {}).sort()) if (!order.includes(step)) order.push(step);
  return order.filter((step) => steps?.[step]);
}

/** {done, running, retrying, queued, waiting, total} of one step's counts by state. */
export function stepParts(states) {
  const parts = { total: 0 };
  for (const part of PARTS) {
    parts[part.key] = part.states.reduce((sum, state) => sum + (states?.[state] || 0), 0);
    parts.total += parts[part.key];
  }
  return parts;
}

export class StepBars {
  constructor(root, empty) {
    this.root = root;
    this.empty = empty;
    this.rows = new KeyedRows(root, (step) => this._row(step));
  }

  _row(step) {
    const segments = Object.fromEntries(PARTS.map((part) => [part.key, h('span', { class: `step-seg ${part.cls}`, dataset: { part: part.key } })]));
    const row = {
      el: h('div', { class: 'step-row', dataset: { step } }),
      name: h('span', { class: 'step-name', text: step }),
      bar: h('span', { class: 'step-bar', role: 'img' }, ...Object.values(segments)),
      counts: h('span', { class: 'step-counts num' }),
      segments,
    };
    row.el.append(row.name, row.bar, row.counts);
    return row;
  }

  render(steps, workflowDetails) {
    const order = stepOrder(workflowDetails, steps);
    this.rows.render(order, (step) => step, (row, step) => {
      const parts = stepParts(steps[step]);
      for (const part of PARTS) {
        const share = parts.total ? (parts[part.key] / parts.total) * 100 : 0;
        row.segments[part.key].style.width = `${share.toFixed(2)}%`;
        row.segments[part.key].title = `${step}: ${fmtInt(parts[part.key])} ${part.label}`;
      }
      const open = parts.total - parts.done;
      setText(row.counts, `${fmtInt(parts.done)} done · ${fmtInt(open)} to go`);
      row.bar.setAttribute('aria-label', `${step}: ${PARTS.map((p) => `${fmtInt(parts[p.key])} ${p.label}`).join(', ')}`);
      row.el.title = `${step}, of the unfinished orders: ${PARTS.map((p) => `${fmtInt(parts[p.key])} ${p.label}`).join(' · ')}`;
    });
    this.empty.hidden = order.length > 0;
  }
}
