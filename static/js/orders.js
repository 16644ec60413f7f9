// The orders the page holds: one record per order, kept in submission order, updated from
// snapshots, from the event stream and from pages of GET /api/orders. No DOM here.
//
// Freshness: a record remembers `seq`, the newest stream event applied to it (or the
// snapshot's last_seq). A page fetched over HTTP when the stream stood at seq S replaces a
// record's state only if no newer event touched it since; otherwise the events are newer and
// the page only fills in what events do not carry (customer, number, workflow).
//
// How many orders it holds and what each workflow's steps wait for come from the server's
// snapshot (`configure`); the page has no copies of either.

import { DONE, orderStage, TERMINAL } from './states.js';

const TRIM_SLACK = 1000; // trim in chunks, not on every new order

// `moves`: times the step was taken off a worker that died or drained (one per
// task_reassigned event), as the server counts it (its task view's `moves`).
// `compensates`: of an undo (a saga's compensation task), the step whose success it undoes.
function blankTask(compensates = null) {
  return { status: 'pending', attempts: 0, worker: null, moves: 0, error: null, compensates };
}

function taskFrom(t) {
  return {
    status: t.status,
    attempts: t.attempts ?? 0,
    worker: t.worker ?? null,
    moves: t.moves ?? 0,
    error: t.error ?? null,
    compensates: t.compensates ?? null,
  };
}

/** An order's undos in the order they run (its tasks that compensate a step). */
/** Whether the order has exactly the workflow's steps (besides its undos). */
function sameSteps(rec, waitsFor) {
  const undos = undoSteps(rec);
  const own = rec.steps.filter((step) => !undos.includes(step));
  return own.length === Object.keys(waitsFor).length && own.every((step) => step in waitsFor);
}

export function undoSteps(rec) {
  return rec.steps.filter((step) => rec.tasks[step]?.compensates);
}

/** The error an order's row shows: its failed step's, else the newest of a step that is
 *  retrying or was retried (null when none). */
export function orderError(rec) {
  let last = null;
  for (const step of rec.steps) {
    const task = rec.tasks[step];
    if (!task?.error) continue;
    if (task.status === 'failed') return { step, error: task.error };
    last = { step, error: task.error };
  }
  return last;
}

// An order_submitted event names the workflow, its steps and the customer: enough to draw a
// new order until a page of GET /api/orders brings the real record.
function submittedFields(ev) {
  return {
    workflow: typeof ev.workflow === 'string' ? ev.workflow : null,
    steps: Array.isArray(ev.steps) ? ev.steps.filter((s) => typeof s === 'string') : [],
    customer: typeof ev.customer === 'string' ? ev.customer : null,
  };
}

export class OrderBook {
  constructor() {
    this.byId = new Map();
    this.list = []; // ascending key: oldest first
    this.maxKey = 0;
    this.structureVersion = 0; // bumps when orders are added, moved or dropped
    this.changeVersion = 0; // bumps on any change
    this.statusVersion = 0; // bumps when any order's status or stage changes
    this.stubs = 0; // records known only from events (no customer yet)
    this.maxOrders = null; // no cap until the server names one
    this.workflows = {}; // workflow name -> {step: [steps it waits for]}
  }

  /** The server's numbers (from a snapshot): how many orders to keep, the workflows' steps. */
  configure({ maxOrders, workflows }) {
    this.maxOrders = maxOrders;
    this.workflows = workflows;
    this._trim();
  }

  get(id) {
    return this.byId.get(id);
  }

  /** Newest held order's number. */
  newestNumber() {
    for (let i = this.list.length - 1; i >= 0; i--) if (this.list[i].number) return this.list[i].number;
    return 0;
  }

  // ------------------------------------------------------------------ records

  _insert(rec) {
    const list = this.list;
    if (!list.length || list[list.length - 1].key < rec.key) list.push(rec);
    else {
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (list[mid].key < rec.key) lo = mid + 1;
        else hi = mid;
      }
      list.splice(lo, 0, rec);
    }
    if (rec.key > this.maxKey) this.maxKey = rec.key;
    this.byId.set(rec.id, rec);
    this.structureVersion++;
    this._trim();
  }

  _rekey(rec, key) {
    if (rec.key === key) return;
    const at = this.list.indexOf(rec);
    if (at >= 0) this.list.splice(at, 1);
    this.byId.delete(rec.id);
    rec.key = key;
    this._insert(rec);
  }

  _trim() {
    if (this.maxOrders === null || this.list.length <= this.maxOrders + TRIM_SLACK) return;
    const dropped = this.list.splice(0, this.list.length - this.maxOrders);
    for (const rec of dropped) {
      this.byId.delete(rec.id);
      if (!rec.hydrated) this.stubs--;
    }
    this.structureVersion++;
  }

  _setStatus(rec, status) {
    if (rec.status !== status) {
      rec.status = status;
      this.statusVersion++;
    }
  }

  _touch(rec) {
    const stage = orderStage(rec.status, rec.tasks);
    if (rec.stage !== stage) {
      rec.stage = stage;
      this.statusVersion++;
    }
    rec.version++;
    this.changeVersion++;
  }

  /** A full order dict from a snapshot, an HTTP page or an acknowledgement. */
  upsert(o, seqMark, authoritative = false) {
    let rec = this.byId.get(o.id);
    const isNew = !rec;
    if (isNew) {
      rec = { id: o.id, key: o.number, number: o.number, version: 0, seq: -1, hydrated: false, tasks: {}, steps: [], stage: null };
    }
    if (!rec.hydrated) {
      rec.hydrated = true;
      if (!isNew) this.stubs--;
    }
    rec.number = o.number;
    rec.customer = o.customer ?? o.data?.customer ?? '';
    rec.workflow = o.workflow;
    rec.submittedAt = o.submitted_at;
    // What a search of the held orders matches besides id, customer, workflow and errors.
    if (Array.isArray(o.data?.items)) rec.skus = o.data.items.map((item) => String(item?.sku ?? ''));
    if (authoritative || rec.seq <= seqMark) {
      this._setStatus(rec, o.status);
      rec.steps = Object.keys(o.tasks || {});
      rec.tasks = Object.fromEntries(rec.steps.map((step) => [step, taskFrom(o.tasks[step])]));
      rec.finishedAt = o.finished_at ?? null;
      rec.seq = Math.max(rec.seq, seqMark);
    }
    if (isNew) this._insert(rec);
    else if (rec.key !== o.number) this._rekey(rec, o.number);
    this._touch(rec);
    return rec;
  }

  /** The smallest sort key among orders known only from events, or null. */
  oldestStubKey() {
    if (!this.stubs) return null;
    for (const rec of this.list) if (!rec.hydrated) return rec.key;
    return null;
  }

  forgetStubsBornBefore(time) {
    for (const rec of this.list) {
      if (!rec.hydrated && rec.born < time) {
        rec.hydrated = true; // as much as we will ever know
        this.stubs--;
      }
    }
  }

  /** Non-terminal held orders that were not in a snapshot: their state may be stale. */
  oldestUnfinishedNumberNotIn(ids) {
    for (const rec of this.list) {
      if (!TERMINAL.has(rec.status) && !ids.has(rec.id) && rec.number) return rec.number;
    }
    return null;
  }

  // ------------------------------------------------------------------ events

  _task(rec, step) {
    if (!step) return null;
    let task = rec.tasks[step];
    if (!task) {
      task = blankTask();
      rec.tasks[step] = task;
      if (!rec.steps.includes(step)) rec.steps.push(step);
    }
    return task;
  }

  // Events do not say when a step becomes ready: it does once every step it waits for has
  // succeeded, as in the core. After a fan-out several steps become ready at once; a fan-in
  // step waits for all of its inputs. For a workflow the page was not told about nothing is
  // guessed: snapshots and pages of GET /api/orders bring the exact states.
  _readyUnblocked(rec) {
    // A saga's undos run one at a time: each once the one before it succeeded.
    let previous = 'succeeded';
    for (const step of undoSteps(rec)) {
      const task = rec.tasks[step];
      if (task.status === 'pending' && previous === 'succeeded') task.status = 'ready';
      previous = task.status;
    }
    const waitsFor = this.workflows[rec.workflow];
    // An order pinned to another version of its workflow (a deploy since) may have other
    // steps: no guess, its next view says.
    if (!waitsFor || !sameSteps(rec, waitsFor)) return;
    for (const step of rec.steps) {
      const task = rec.tasks[step];
      const deps = waitsFor[step];
      if (task.status !== 'pending' || !deps) continue;
      if (deps.every((dep) => DONE.has(rec.tasks[dep]?.status))) task.status = 'ready';
    }
  }

  /** An unfinished order with a step waiting and none queued or running is waiting; one
   *  that was waiting and has a step in line again is in progress (or pending, if none of
   *  its steps has run yet), as the core derives it. */
  _settleWaiting(rec) {
    if (TERMINAL.has(rec.status) || rec.status === 'compensating') return;
    const states = Object.values(rec.tasks).map((t) => t.status);
    const busy = states.some((s) => s === 'ready' || s === 'assigned' || s === 'running' || s === 'retry_wait');
    if (states.includes('waiting') && !busy) this._setStatus(rec, 'waiting');
    else if (rec.status === 'waiting') {
      const started = Object.values(rec.tasks).some((t) => t.attempts > 0 || t.status === 'succeeded');
      this._setStatus(rec, started ? 'in_progress' : 'pending');
    }
  }

  _stub(ev) {
    const { workflow, steps, customer } = submittedFields(ev);
    const key = this.maxKey + 1;
    const rec = {
      id: ev.order_id, key, number: null, version: 0, seq: ev.seq, hydrated: false,
      customer, workflow, steps, status: 'pending', stage: 'queued',
      tasks: Object.fromEntries(steps.map((s) => [s, blankTask()])),
      submittedAt: ev.ts, finishedAt: null, born: performance.now(),
    };
    this._readyUnblocked(rec);
    this.stubs++;
    this.statusVersion++;
    this._insert(rec);
    return rec;
  }

  /** Apply one stream event; returns the record it touched, if the page holds that order. */
  apply(ev) {
    if (!ev.order_id) return null;
    let rec = this.byId.get(ev.order_id);
    if (!rec) {
      if (ev.type !== 'order_submitted') return null; // older than anything held
      rec = this._stub(ev);
    }
    if (ev.seq <= rec.seq && ev.type !== 'order_submitted') return rec; // already in its state
    ON_EVENT[ev.type]?.(this, rec, this._task(rec, ev.step), ev);
    rec.seq = Math.max(rec.seq, ev.seq);
    this._touch(rec);
    return rec;
  }

  // ------------------------------------------------------------------ views

  /** Counts by status over the held orders. */
  countByStatus() {
    const counts = { all: this.list.length, pending: 0, in_progress: 0, waiting: 0, completed: 0, failed: 0, cancelled: 0, compensating: 0, compensated: 0, compensation_failed: 0 };
    for (const rec of this.list) counts[rec.status] = (counts[rec.status] || 0) + 1;
    return counts;
  }

  /** Counts by stage (queued, running, retrying, completed, failed, cancelled) over the
   *  held orders: the rule the server's tiles count by. */
  countByStage() {
    const counts = { all: this.list.length, queued: 0, running: 0, retrying: 0, waiting: 0, completed: 0, failed: 0, cancelled: 0, compensated: 0, compensation_failed: 0 };
    for (const rec of this.list) counts[rec.stage] = (counts[rec.stage] || 0) + 1;
    return counts;
  }

}

/**
 * What each stream event does to an order's record: (book, rec, task, ev), where `task` is
 * the record of the event's step (null for order events). Types not listed change nothing
 * but the record's seq (order_submitted: the record was just made from it).
 */
export const ON_EVENT = {
  task_started(book, rec, task, ev) {
    task.status = 'running';
    task.attempts = Math.max(task.attempts, ev.attempt);
    task.worker = ev.worker_id;
    if (rec.status === 'pending' || rec.status === 'waiting') book._setStatus(rec, 'in_progress');
  },
  task_succeeded(book, rec, task, ev) {
    task.status = 'succeeded';
    task.worker = ev.worker_id;
    task.error = null;
    book._readyUnblocked(rec);
  },
  task_failed(book, rec, task, ev) {
    task.status = 'failed'; // task_retrying follows unless it gave up
    task.error = ev.error ?? ev.message;
  },
  task_retrying(book, rec, task) {
    task.status = 'retry_wait';
  },
  task_reassigned(book, rec, task, ev) {
    task.status = ev.worker_id ? 'assigned' : 'ready';
    task.worker = ev.worker_id;
    // Every move counts, drained or not; the event says how many its task has had.
    task.moves = Math.max(task.moves + 1, ev.moves ?? 0);
  },
  task_recovered(book, rec, task) {
    task.status = 'ready';
    task.worker = null;
  },
  task_cancelled(book, rec, task) {
    task.status = 'cancelled';
  },
  // An operator moved the order to another workflow definition: its steps are now that
  // definition's (`ev.steps`); the ones it had keep their state, added ones start pending
  // (task_skipped follows for those skipped).
  order_migrated(book, rec, task, ev) {
    if (!Array.isArray(ev.steps)) return;
    const steps = ev.steps.filter((s) => typeof s === 'string');
    rec.tasks = Object.fromEntries(steps.map((s) => [s, rec.tasks[s] || blankTask()]));
    rec.steps = steps;
    if (typeof ev.workflow === 'string') rec.workflow = ev.workflow;
    book._readyUnblocked(rec);
  },
  task_skipped(book, rec, task) {
    task.status = 'skipped';
    book._readyUnblocked(rec);
  },
  order_completed(book, rec, task, ev) {
    book._setStatus(rec, 'completed');
    rec.finishedAt = ev.ts;
  },
  order_failed(book, rec, task, ev) {
    book._setStatus(rec, 'failed');
    rec.finishedAt = ev.ts;
  },
  order_cancelled(book, rec, task, ev) {
    book._setStatus(rec, 'cancelled');
    rec.finishedAt = ev.ts;
  },
  order_retried(book, rec, task, ev) {
    // A failed compensation retries its undos (`ev.undos`), never the steps they undo; a
    // run again from a step (`ev.rerun`) runs the steps it names, succeeded ones too.
    const undos = Array.isArray(ev.undos) ? ev.undos : null;
    const rerun = Array.isArray(ev.rerun) ? ev.rerun : null;
    book._setStatus(rec, undos ? 'compensating' : 'in_progress');
    rec.finishedAt = null;
    for (const [step, t] of Object.entries(rec.tasks)) {
      if (undos && !undos.includes(step)) continue;
      if (rerun ? rerun.includes(step) : t.status !== 'succeeded') Object.assign(t, blankTask(t.compensates));
    }
    book._readyUnblocked(rec);
  },
  // A saga: the event names the undos in the order they run and the step each undoes.
  order_compensating(book, rec, task, ev) {
    book._setStatus(rec, 'compensating');
    const undos = Array.isArray(ev.undo) ? ev.undo.filter((s) => typeof s === 'string') : [];
    const undone = ev.undoes && typeof ev.undoes === 'object' ? ev.undoes : {};
    for (const step of undos) {
      book._task(rec, step).compensates = typeof undone[step] === 'string' ? undone[step] : '?';
    }
    book._readyUnblocked(rec);
  },
  // Waiting for the outside world: a wait for its signal, a step for its time (whose end
  // says nothing: the step starts). An order with nothing queued or running is waiting.
  wait_started(book, rec, task, ev) {
    task.status = 'waiting';
    task.until = ev.until ?? null;
    book._settleWaiting(rec);
  },
  task_delayed(book, rec, task, ev) {
    task.status = 'waiting';
    task.until = ev.until ?? null;
    book._settleWaiting(rec);
  },
  wait_timed_out(book, rec, task, ev) {
    // "fail" fails the wait itself (no attempt failed); "cancel" cancels it (task_cancelled
    // follows); "continue" completes it (wait_completed follows).
    if (ev.on_timeout === 'fail') {
      task.status = 'failed';
      task.error = ev.message;
    }
  },
  wait_completed(book, rec, task) {
    task.status = 'succeeded';
    task.until = null;
    book._readyUnblocked(rec);
    book._settleWaiting(rec);
  },
  order_compensated(book, rec, task, ev) {
    book._setStatus(rec, 'compensated');
    rec.finishedAt = ev.ts;
  },
  order_compensation_failed(book, rec, task, ev) {
    book._setStatus(rec, 'compensation_failed');
    rec.finishedAt = ev.ts;
  },
};
