// What the order view shows of one order besides its states (GET /api/orders/<id>): what was
// ordered, line by line with a total, and for each step its result and every failed attempt
// with its error and the traceback of where the handler raised it (the attempt's
// `task_failed` event carries it). Pure: no DOM, so node tests read it as the page does.

/** The order's lines, each {sku, qty, price, total}, with the order's `total` and `units`.
 *  Input the server accepted (sku text, qty >= 1, price >= 0); anything else counts as 0. */
export function orderLines(data) {
  const items = Array.isArray(data?.items) ? data.items : [];
  const lines = items.map((item) => {
    const qty = Number(item?.qty) || 0;
    const price = Number(item?.price) || 0;
    return { sku: String(item?.sku ?? ''), qty, price, total: qty * price };
  });
  return {
    lines,
    total: lines.reduce((sum, line) => sum + line.total, 0),
    units: lines.reduce((sum, line) => sum + line.qty, 0),
  };
}

/** A money amount as the order view writes it: "3.75", "1,204.50". */
export function fmtMoney(amount) {
  return (Number(amount) || 0).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

/** Each step of the order in its workflow's order: {step, status, attempts, hasResult,
 *  result, failures}, `failures` being its failed attempts, oldest first (a retried order
 *  numbers its attempts from 1 again), each {seq (its event's), attempt, worker, error,
 *  traceback (null when the handler failed on purpose or timed out), ts}. */
export function stepAttempts(order) {
  const failures = new Map();
  for (const ev of order?.events || []) {
    if (ev.type !== 'task_failed' || !ev.step) continue;
    if (!failures.has(ev.step)) failures.set(ev.step, []);
    failures.get(ev.step).push({
      seq: ev.seq,
      attempt: ev.attempt,
      worker: ev.worker_id ?? null,
      error: ev.error ?? ev.message,
      traceback: typeof ev.traceback === 'string' && ev.traceback ? ev.traceback : null,
      ts: ev.ts,
    });
  }
  return Object.entries(order?.tasks || {}).map(([step, task]) => ({
    step,
    status: task.status,
    attempts: task.attempts ?? 0,
    // A step that succeeded has a result, even `null`; one that did not has none yet.
    hasResult: task.status === 'succeeded',
    result: task.result,
    failures: failures.get(step) || [],
  }));
}

/** A result as indented JSON, for reading whole. */
export function resultText(result) {
  const text = JSON.stringify(result, null, 2);
  return text === undefined ? 'null' : text;
}

/** One line of at most `max` characters standing for a longer text (a result, an error). */
export function oneLine(text, max = 120) {
  const flat = String(text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** Where a traceback's exception was raised: its innermost frame, "shop.py:57 in invoice"
 *  (as the server's log line names it); null for a text without frames. */
export function raisedAt(traceback) {
  if (!traceback) return null;
  const frames = [...String(traceback).matchAll(/^\s*File "([^"]*)", line (\d+), in (.+)$/gm)];
  if (frames.length === 0) return null;
  const [, path, line, fn] = frames[frames.length - 1];
  return `${path.split(/[/\\]/).pop()}:${line} in ${fn}`;
}
