// The command forms: submit one order (in a workflow, with a priority), submit N demo orders
// (in a workflow), and the chaos settings (failure rate and latency range, applied live with
// PUT /api/chaos). The workflows offered are the server's (the snapshot's workflow_details).
// The chaos knobs are the built-in demo's: shown only where they drive the app's steps (the
// snapshot's `app.chaos`); with another app the panel says whose they are. Their values are
// the server's, pushed to every open page (the `workers` message), so a change made on one
// page shows on all of them.

import { api } from '../api.js';
import { fmtInt, h } from '../dom.js';
import { chooseWorkflow, workflowShape } from '../workflows.js';

const CHAOS_DEBOUNCE_MS = 250;

export class Controls {
  /** els: the form elements; deps: {connection, store, toast} */
  constructor(els, { connection, store, toast, onOrder }) {
    this.els = els;
    this.connection = connection;
    this.store = store;
    this.toast = toast;
    this.onOrder = onOrder;
    this.chaosTimer = null;
    this.chaosEditing = false;
    this.workflowsShown = null; // the list the pickers were last filled from

    els.orderForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submitOrder();
    });
    els.demoForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submitDemo();
    });
    for (const select of [els.workflow, els.demoWorkflow]) {
      select.addEventListener('change', () => {
        const chosen = (this.workflowsShown || []).find((w) => w.name === select.value);
        select.title = chosen ? workflowShape(chosen) : '';
      });
    }
    for (const input of [els.failure, els.latMin, els.latMax]) {
      input.addEventListener('input', () => {
        this.chaosEditing = true;
        if (input === els.latMin && Number(els.latMin.value) > Number(els.latMax.value)) els.latMax.value = els.latMin.value;
        if (input === els.latMax && Number(els.latMax.value) < Number(els.latMin.value)) els.latMin.value = els.latMax.value;
        this._showChaos(Number(els.failure.value), [Number(els.latMin.value), Number(els.latMax.value)]);
        clearTimeout(this.chaosTimer);
        this.chaosTimer = setTimeout(() => this.applyChaos(), CHAOS_DEBOUNCE_MS);
      });
    }
  }

  async submitOrder() {
    const { customer, sku, qty, price, workflow, priority, orderButton } = this.els;
    const body = {
      customer: customer.value,
      items: [{ sku: sku.value.trim(), qty: Number(qty.value), price: Number(price.value) }],
    };
    // Until the server named its workflows, its default one.
    if (workflow.value) body.workflow = workflow.value;
    if (priority.value.trim() !== '') body.priority = Number(priority.value);
    orderButton.disabled = true;
    try {
      const reply = await this.connection.command('submit_order', body);
      this.onOrder(reply.order);
      this.toast(`Order ${reply.order.id} submitted`, 'good');
    } catch (err) {
      this.toast(`Order not submitted: ${err.message}`, 'bad');
    } finally {
      orderButton.disabled = false;
    }
  }

  async submitDemo() {
    const count = Number(this.els.demoCount.value);
    const workflow = this.els.demoWorkflow.value;
    this.els.demoButton.disabled = true;
    try {
      const reply = await api('/api/orders/bulk', { method: 'POST', body: workflow ? { count, workflow } : { count } });
      this.toast(`${fmtInt(reply.ids.length)} demo orders submitted${workflow ? ` (${workflow})` : ''}`, 'good');
    } catch (err) {
      this.toast(`Demo orders not submitted: ${err.message}`, 'bad');
    } finally {
      this.els.demoButton.disabled = false;
    }
  }

  async applyChaos() {
    const body = {
      failure_rate: Number(this.els.failure.value),
      latency_ms: [Number(this.els.latMin.value), Number(this.els.latMax.value)],
    };
    try {
      this.store.chaos = await api('/api/chaos', { method: 'PUT', body });
      this.els.chaosState.textContent = 'applied';
    } catch (err) {
      this.toast(`Chaos not changed: ${err.message}`, 'bad');
    } finally {
      this.chaosEditing = false;
      this.render();
    }
  }

  _showChaos(rate, [lo, hi]) {
    this.els.failureOut.textContent = `${Math.round(rate * 100)}%`;
    this.els.latencyOut.textContent = lo === hi ? `${fmtInt(lo)} ms` : `${fmtInt(lo)}–${fmtInt(hi)} ms`;
  }

  /** Offer the server's workflows in both forms, keeping each form's choice if still offered. */
  renderWorkflows(details) {
    if (details === this.workflowsShown) return;
    this.workflowsShown = details;
    const names = details.map((w) => w.name);
    for (const select of [this.els.workflow, this.els.demoWorkflow]) {
      const chosen = chooseWorkflow(names, select.value);
      select.replaceChildren(...details.map((w) => h('option', { value: w.name, text: w.name, title: workflowShape(w) })));
      select.value = chosen;
      select.disabled = names.length === 0;
      select.title = chosen ? workflowShape(details.find((w) => w.name === chosen)) : '';
    }
  }

  /** Show the server's chaos settings unless the user is changing them, or, with an app the
   *  demo's knobs do not drive, say so instead of offering them. */
  render() {
    const app = this.store.app;
    const applies = !app || app.chaos !== false;
    const { knobs, other, title, chaosState } = this.els;
    knobs.hidden = !applies;
    other.hidden = applies;
    title.textContent = applies ? 'Load and chaos' : 'Load';
    chaosState.hidden = !applies;
    if (!applies) {
      other.textContent = `Failure rate and step latency are knobs of the built-in demo's steps. `
        + `This server runs the app “${app.name ?? 'unnamed'}”, whose steps do not follow them, so they are not offered here.`;
      return;
    }
    const chaos = this.store.chaos;
    if (!chaos || this.chaosEditing) return;
    const [lo, hi] = chaos.latency_ms || [0, 0];
    this.els.failure.value = String(chaos.failure_rate);
    this.els.latMin.value = String(Math.round(lo));
    this.els.latMax.value = String(Math.round(hi));
    this._showChaos(chaos.failure_rate, [Math.round(lo), Math.round(hi)]);
  }
}
