// What each state looks like. Colours come from the Okabe-Ito palette (safe for the common
// colour-vision deficiencies) and every state also has a glyph and a word, so colour is never
// the only cue. The CSS classes named here are defined in dashboard.css.

/** Task states: the scheduler's ten, shown as nine (ready and assigned both "queued"). */
export const TASK_STATE = {
  pending: { label: 'pending', glyph: '○', cls: 's-pending' },
  ready: { label: 'queued', glyph: '…', cls: 's-queued' },
  assigned: { label: 'queued', glyph: '…', cls: 's-queued' },
  running: { label: 'running', glyph: '▶', cls: 's-running' },
  retry_wait: { label: 'retry', glyph: '↻', cls: 's-retry' },
  // A wait for its signal (or timeout), or a step for its time (a delay, not_before).
  waiting: { label: 'waiting', glyph: '⧖', cls: 's-pending' },
  succeeded: { label: 'done', glyph: '✓', cls: 's-done' },
  failed: { label: 'failed', glyph: '✕', cls: 's-failed' },
  cancelled: { label: 'cancelled', glyph: '⊘', cls: 's-cancelled' },
  // Never to run: a step a migration to another definition added before steps that ran.
  skipped: { label: 'skipped', glyph: '↷', cls: 's-cancelled' },
};

/** Task states that let the steps after them go on, as in the core (states.py DONE). */
export const DONE = new Set(['succeeded', 'skipped']);

export const taskState = (status) => TASK_STATE[status] || { label: status, glyph: '?', cls: 's-pending' };

export const ORDER_STATUS = {
  pending: { label: 'pending', glyph: '○', cls: 's-pending' },
  in_progress: { label: 'in progress', glyph: '▶', cls: 's-running' },
  // Nothing of it queued or running: a step waits for a signal or a time.
  waiting: { label: 'waiting', glyph: '⧖', cls: 's-pending' },
  completed: { label: 'completed', glyph: '✓', cls: 's-done' },
  failed: { label: 'failed', glyph: '✕', cls: 's-failed' },
  cancelled: { label: 'cancelled', glyph: '⊘', cls: 's-cancelled' },
  // A saga: its succeeded steps' undos run (newest success first), then it ends compensated,
  // or compensation_failed when an undo ran out of retries (an incident, retried by hand).
  compensating: { label: 'compensating', glyph: '↶', cls: 's-retry' },
  compensated: { label: 'compensated', glyph: '↶', cls: 's-cancelled' },
  compensation_failed: { label: 'compensation failed', glyph: '✕', cls: 's-failed' },
};

export const orderStatus = (status) => ORDER_STATUS[status] || { label: status, glyph: '?', cls: 's-pending' };

export const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'compensated', 'compensation_failed']);

/**
 * Where an order stands, as the tiles, the filters, /api/stats (`progress`) and /metrics
 * count it: the server's rule (scheduler/engine/states.py OrderStage). An unfinished order is
 * running while any of its steps runs, else retrying while one waits out a backoff, else
 * waiting while one waits for a signal or a time and none is queued, else queued; a finished
 * one is its status. tests/test_browser_contract.py holds the two together.
 */
export const ORDER_STAGE = {
  queued: { label: 'queued', glyph: '…', cls: 's-queued', title: 'Unfinished, no step running: its next steps wait for a free slot' },
  running: { label: 'running', glyph: '▶', cls: 's-running', title: 'A step of it is running on a worker' },
  retrying: { label: 'retrying', glyph: '↻', cls: 's-retry', title: 'No step running, one waits out a backoff before its retry' },
  waiting: { label: 'waiting', glyph: '⧖', cls: 's-pending', title: 'Nothing queued or running: a step waits for a signal (a payment confirmed, a parcel delivered) or for its time' },
  completed: { label: 'completed', glyph: '✓', cls: 's-done', title: 'Every step succeeded' },
  failed: { label: 'failed', glyph: '✕', cls: 's-failed', title: 'A step failed for good' },
  cancelled: { label: 'cancelled', glyph: '⊘', cls: 's-cancelled', title: 'Cancelled' },
  compensated: { label: 'compensated', glyph: '↶', cls: 's-cancelled', title: 'Failed or cancelled after some steps succeeded: their undos all succeeded' },
  compensation_failed: { label: 'undo failed', glyph: '✕', cls: 's-failed', title: 'An undo of a succeeded step ran out of retries: retry its undos by hand' },
};

export const STAGES = Object.keys(ORDER_STAGE);

export const orderStageStyle = (stage) => ORDER_STAGE[stage] || { label: stage, glyph: '?', cls: 's-pending', title: '' };

/** The stage of an order from its status and its tasks' statuses ({step: {status}}). */
export function orderStage(status, tasks) {
  if (TERMINAL.has(status)) return status;
  let retrying = false;
  let waiting = false;
  let queued = false;
  for (const task of Object.values(tasks || {})) {
    if (task.status === 'running') return 'running';
    if (task.status === 'retry_wait') retrying = true;
    else if (task.status === 'waiting') waiting = true;
    else if (task.status === 'ready' || task.status === 'assigned') queued = true;
  }
  if (retrying) return 'retrying';
  return waiting && !queued ? 'waiting' : 'queued';
}

export const WORKER_STATUS = {
  alive: { label: 'alive', glyph: '●', cls: 'w-alive' },
  suspect: { label: 'suspect', glyph: '◐', cls: 'w-suspect' },
  draining: { label: 'draining', glyph: '◌', cls: 'w-draining' },
  dead: { label: 'dead', glyph: '✕', cls: 'w-dead' },
  removed: { label: 'removed', glyph: '–', cls: 'w-removed' },
};

export const workerStatus = (status) => WORKER_STATUS[status] || { label: status, glyph: '?', cls: 'w-removed' };

/**
 * Every event type the page knows, each one the server emits (scheduler/engine/events.py
 * EVENT_TYPES; tests/test_browser_contract.py checks this list against it, and the node tests
 * check that no module handles a type missing here).
 */
export const EVENT_TYPES = Object.freeze([
  'order_submitted', 'order_completed', 'order_failed', 'order_cancelled', 'order_retried',
  'task_started', 'task_succeeded', 'task_failed', 'task_retrying', 'task_reassigned',
  'task_cancelled', 'result_rejected', 'task_recovered',
  'worker_added', 'worker_dead', 'worker_draining', 'worker_removed',
  'thread_abandoned', 'worker_hung',
  'server_restarted', 'definitions_missing', 'operator_action',
  'alert_raised', 'alert_cleared',
  'step_paused', 'breaker_tripped', 'step_resumed', 'step_limits_changed',
  'order_compensating', 'order_compensated', 'order_compensation_failed',
  'order_migrated', 'task_skipped',
  'wait_started', 'signal_received', 'signal_refused', 'wait_completed', 'wait_timed_out',
  'task_delayed',
  'schedule_added', 'schedule_fired', 'schedule_skipped',
]);

/** Event types that make the event log, by the filter group they belong to. */
export const LOG_GROUPS = {
  failures: { label: 'Failures', title: 'Failed attempts, failed orders, late results rejected, failed compensations', types: ['task_failed', 'order_failed', 'result_rejected', 'order_compensation_failed'] },
  waits: { label: 'Waits', title: 'Signals received (and refused: too late, or twice) and waits timed out', types: ['signal_received', 'signal_refused', 'wait_timed_out'] },
  undos: { label: 'Undos', title: 'Orders undoing their succeeded steps (sagas) and compensated', types: ['order_compensating', 'order_compensated'] },
  retries: { label: 'Retries', title: 'Retries, manual retries and recoveries', types: ['task_retrying', 'order_retried', 'task_recovered'] },
  moves: { label: 'Moves', title: 'Reassignments: tasks moved off a dead or draining worker', types: ['task_reassigned'] },
  workers: { label: 'Workers', title: 'Workers joining, draining, leaving and dying; threads abandoned to hung handlers; server restarts', types: ['worker_dead', 'worker_added', 'worker_draining', 'worker_removed', 'thread_abandoned', 'worker_hung', 'server_restarted', 'definitions_missing'] },
  operator: { label: 'Operator', title: 'What operators did (kill, drain, add, chaos, cancel, retry, bulk actions, orders moved to another version) and who', types: ['operator_action', 'order_migrated'] },
  steps: { label: 'Steps', title: 'Steps paused (by an operator or a circuit breaker), resumed, their limits changed', types: ['step_paused', 'breaker_tripped', 'step_resumed', 'step_limits_changed'] },
  alerts: { label: 'Alerts', title: 'Alerts the server raised and cleared: failure spikes, steps no worker can run, overdue orders, flapping workers, a failing journal', types: ['alert_raised', 'alert_cleared'] },
  schedules: { label: 'Schedules', title: 'Recurring schedules added, their times fired, missed times skipped', types: ['schedule_added', 'schedule_fired', 'schedule_skipped'] },
};

export const LOG_GROUP_OF = Object.fromEntries(
  Object.entries(LOG_GROUPS).flatMap(([group, { types }]) => types.map((t) => [t, group])),
);

/** Short labels for the log's type badges. */
export const EVENT_LABEL = {
  task_failed: 'attempt failed',
  order_failed: 'order failed',
  result_rejected: 'late result rejected',
  task_retrying: 'retry',
  order_retried: 'order retried',
  task_recovered: 'recovered',
  task_reassigned: 'reassigned',
  worker_dead: 'worker dead',
  worker_added: 'worker joined',
  worker_draining: 'worker draining',
  worker_removed: 'worker left',
  thread_abandoned: 'thread abandoned',
  worker_hung: 'worker hung',
  order_submitted: 'submitted',
  order_completed: 'completed',
  order_cancelled: 'cancelled',
  task_started: 'started',
  task_succeeded: 'succeeded',
  task_cancelled: 'step cancelled',
  server_restarted: 'server restarted',
  definitions_missing: 'old version waits',
  operator_action: 'operator',
  alert_raised: 'alert',
  alert_cleared: 'alert cleared',
  step_paused: 'step paused',
  breaker_tripped: 'breaker tripped',
  step_resumed: 'step resumed',
  step_limits_changed: 'limits changed',
  order_compensating: 'undoing',
  order_compensated: 'compensated',
  order_compensation_failed: 'undo failed',
  order_migrated: 'moved to a version',
  task_skipped: 'step skipped',
  wait_started: 'waits',
  signal_received: 'signal',
  signal_refused: 'signal refused',
  wait_completed: 'wait done',
  wait_timed_out: 'wait timed out',
  task_delayed: 'delayed',
  schedule_added: 'schedule added',
  schedule_fired: 'schedule fired',
  schedule_skipped: 'schedule skipped',
};

/** The tone of an event's badge: bad, warn, move, good, info. */
export function eventTone(type) {
  if (type === 'task_failed' || type === 'order_failed' || type === 'worker_dead' || type === 'worker_hung' || type === 'result_rejected' || type === 'server_restarted') return 'bad';
  if (type === 'operator_action' || type === 'order_migrated') return 'op';
  if (type === 'alert_raised' || type === 'breaker_tripped' || type === 'order_compensation_failed' || type === 'definitions_missing') return 'bad';
  if (type === 'order_compensating' || type === 'signal_refused' || type === 'wait_timed_out') return 'warn';
  if (type === 'signal_received' || type === 'wait_completed') return 'good';
  if (type === 'order_compensated') return 'good';
  if (type === 'step_paused') return 'warn';
  if (type === 'step_resumed') return 'good';
  if (type === 'step_limits_changed') return 'op';
  if (type === 'alert_cleared') return 'good';
  if (type === 'schedule_skipped') return 'warn';
  if (type === 'task_retrying' || type === 'order_retried' || type === 'worker_draining' || type === 'task_recovered' || type === 'thread_abandoned') return 'warn';
  if (type === 'task_reassigned') return 'move';
  if (type === 'task_succeeded' || type === 'order_completed' || type === 'worker_added') return 'good';
  return 'info';
}

// Worker identity colours (ring arcs and card swatches): distinct under deuteranopia and
// protanopia; the id is always written next to the colour.
const WORKER_COLOURS = ['#56B4E9', '#E69F00', '#009E73', '#CC79A7', '#0072B2', '#D55E00', '#F0E442', '#BBBBBB'];

export function workerColour(id) {
  const match = /(\d+)$/.exec(id || '');
  let n;
  if (match) n = Number(match[1]) - 1;
  else {
    n = 0;
    for (const ch of String(id)) n = (n * 31 + ch.charCodeAt(0)) >>> 0;
  }
  return WORKER_COLOURS[((n % WORKER_COLOURS.length) + WORKER_COLOURS.length) % WORKER_COLOURS.length];
}

/**
 * Which server leads, for the header: nothing for a server alone on its journal (epoch
 * null); with several on one PostgreSQL database, this one's role, the lease's epoch and,
 * on a standby, the leader it defers to (its URL, when it is a web address, as a link).
 * `server` is the snapshot's {role, epoch, leader, leader_name, server}.
 */
export function serverRole(server) {
  if (!server || server.epoch === null || server.epoch === undefined) return null;
  const epoch = `epoch ${server.epoch}`;
  if (server.role === 'leader') {
    return { text: `leads · ${epoch}`, tone: 'good', href: null,
      title: 'This server holds the leadership lease: it schedules every order' };
  }
  const leader = server.leader_name || server.leader || 'none yet';
  const href = /^https?:\/\//.test(server.leader || '') ? server.leader : null;
  const what = server.role === 'starting' ? 'taking over' : 'standby';
  return { text: `${what} · leader: ${leader} · ${epoch}`, tone: 'warn', href,
    title: server.role === 'starting'
      ? 'Elected: this server is recovering the journal before it schedules'
      : 'Another server leads; this page shows nothing scheduled here. Open the leader.' };
}
