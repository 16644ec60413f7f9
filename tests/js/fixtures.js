// Shared test data for the node tests: the snapshot's `workflows` and `limits` (shapes as in
// dashboard/stream/realtime.py) and a feed that numbers events the way the server does.

// As the server sends them (tests/test_stream.py checks the real ones): `ecommerce` is a
// chain, `ecommerce_invoiced` fans out after payment and in again at shipping.
export const WORKFLOWS = Object.freeze({
  ecommerce: { payment: [], packing: ['payment'], shipping: ['packing'] },
  ecommerce_invoiced: {
    payment: [], packing: ['payment'], invoice: ['payment'], shipping: ['packing', 'invoice'],
  },
});

// The same workflows as the snapshot's `workflow_details` (GET /api/workflows) lists them.
export const WORKFLOW_DETAILS = Object.freeze(Object.entries(WORKFLOWS).map(([name, steps]) => ({
  name,
  steps: Object.entries(steps).map(([step, deps]) => ({
    name: step, deps, doc: '', async: false, timeout: null, retries: null, backoff: null,
    max_in_flight: null, rate: null, burst: null, tags: [],
  })),
})));

export const LIMITS = Object.freeze({ orders: 50, orders_page: 10, initial_orders: 20, log_events: 30 });

export const CONFIG = Object.freeze({ heartbeat_interval: 0.5, heartbeat_timeout: 2, max_retries: 3 });

/** A snapshot as the server sends it, with `over` replacing any part. */
export function snapshot(over = {}) {
  return {
    last_seq: 0, events: [], orders: [], workers: [], ring: { arcs: [], shares: {} },
    stats: { orders: {}, tasks: {}, workers: {} }, chaos: null,
    config: CONFIG, limits: LIMITS, workflows: WORKFLOWS, workflow_details: WORKFLOW_DETAILS, ...over,
  };
}

/** An order dict as GET /api/orders and snapshots carry it. */
export function orderDict(id, number, { workflow = 'ecommerce', status = 'pending', tasks = null, customer = 'ada' } = {}) {
  const steps = Object.keys(WORKFLOWS[workflow]);
  const all = tasks ?? Object.fromEntries(steps.map((s) => [s, { status: 'pending' }]));
  return {
    id, number, status, workflow, customer, data: { customer },
    tasks: Object.fromEntries(Object.entries(all).map(([s, t]) => [s, {
      attempts: 0, runs: 0, moves: 0, reassignments: 0, worker: null, error: null, ...t,
    }])),
    submitted_at: 1000 + number, finished_at: null,
  };
}

/** Events with consecutive seqs, shaped like the core's. */
export class Feed {
  constructor(seq = 0) {
    this.seq = seq;
  }

  event(type, fields = {}) {
    this.seq += 1;
    return {
      seq: this.seq, ts: 2000 + this.seq, type, order_id: null, step: null, worker_id: null,
      attempt: 0, message: `${type} #${this.seq}`, ...fields,
    };
  }

  submitted(orderId, workflow = 'ecommerce', customer = 'ada') {
    return this.event('order_submitted', {
      order_id: orderId, workflow, steps: Object.keys(WORKFLOWS[workflow]), customer,
    });
  }

  task(type, orderId, step, fields = {}) {
    return this.event(type, { order_id: orderId, step, worker_id: 'w-1', attempt: 1, ...fields });
  }

  /** One attempt of a step, started and succeeded. */
  runs(orderId, step, worker = 'w-1') {
    return [
      this.task('task_started', orderId, step, { worker_id: worker }),
      this.task('task_succeeded', orderId, step, { worker_id: worker }),
    ];
  }
}

/** {step: status} of one record. */
export const statuses = (rec) => Object.fromEntries(rec.steps.map((s) => [s, rec.tasks[s].status]));
