// What the page knows about the server's workflows (the snapshot's `workflow_details`, the
// same list GET /api/workflows answers): the names the submit forms offer, a workflow's DAG
// laid out in levels, and a step's policy in words. No DOM here.

/**
 * Lay out a DAG in levels: a step sits one level below the deepest step it waits for, so
 * steps that may run at once after a fan-out share a level and a fan-in step sits below all
 * of its inputs. Within a level, steps are ordered by where the steps they wait for stand
 * (fewer crossing lines), then as given.
 *
 * @param steps [{name, deps: [names]}], or a mapping {name: [deps]}, in any order
 * @returns {levels: [[name]], level: {name: n}, index: {name: i}, edges: [{from, to}]}
 *   Dependencies on unknown steps are left out; steps caught in a cycle (the server refuses
 *   those) go one level below everything else rather than being lost.
 */
export function layoutDag(steps) {
  const list = Array.isArray(steps)
    ? steps.map((s) => ({ name: s.name, deps: s.deps || [] }))
    : Object.entries(steps || {}).map(([name, deps]) => ({ name, deps: deps || [] }));
  const names = new Set(list.map((s) => s.name));
  const order = new Map(list.map((s, i) => [s.name, i]));
  const deps = new Map(list.map((s) => [s.name, [...new Set(s.deps)].filter((d) => names.has(d) && d !== s.name)]));

  const level = {};
  let left = list.map((s) => s.name);
  while (left.length) {
    const placeable = left.filter((n) => deps.get(n).every((d) => d in level));
    if (!placeable.length) break; // a cycle: placed below, after the loop
    for (const n of placeable) level[n] = deps.get(n).reduce((deepest, d) => Math.max(deepest, level[d] + 1), 0);
    left = left.filter((n) => !(n in level));
  }
  const deepest = Math.max(-1, ...Object.values(level));
  for (const n of left) level[n] = deepest + 1;

  const levels = [];
  for (const s of list) (levels[level[s.name]] ||= []).push(s.name);
  const index = {};
  levels.forEach((row, l) => {
    if (l > 0) {
      const centre = (n) => {
        const ds = deps.get(n).filter((d) => level[d] < l);
        return ds.length ? ds.reduce((sum, d) => sum + (index[d] + 0.5) / levels[level[d]].length, 0) / ds.length : 0.5;
      };
      const at = new Map(row.map((n) => [n, centre(n)]));
      row.sort((a, b) => at.get(a) - at.get(b) || order.get(a) - order.get(b));
    }
    row.forEach((n, i) => { index[n] = i; });
  });
  const edges = list.flatMap((s) => deps.get(s.name).map((d) => ({ from: d, to: s.name })));
  return { levels, level, index, edges };
}

/**
 * Where each step's box and each line go, for boxes `box` px tall with `gap` px between
 * levels: x as a percentage of the width (the centre of the step's equal share of its
 * level), y in px. A line runs from the bottom of the step waited for to the top of the one
 * waiting, as a cubic curve.
 */
export function dagGeometry(layout, { box = 54, gap = 30 } = {}) {
  const centre = {};
  layout.levels.forEach((names, l) => {
    names.forEach((n, i) => {
      centre[n] = { x: ((i + 0.5) / names.length) * 100, top: l * (box + gap) };
    });
  });
  const height = layout.levels.length ? layout.levels.length * box + (layout.levels.length - 1) * gap : 0;
  const fmt = (v) => Number(v.toFixed(2));
  const lines = layout.edges.map(({ from, to }) => {
    const a = centre[from];
    const b = centre[to];
    const y1 = a.top + box;
    const y2 = b.top;
    const bend = (y2 - y1) / 2;
    return {
      from, to,
      d: `M ${fmt(a.x)} ${y1} C ${fmt(a.x)} ${y1 + bend} ${fmt(b.x)} ${y2 - bend} ${fmt(b.x)} ${y2}`,
    };
  });
  return { centre, height, lines };
}

const seconds = (s) => (s >= 1 || s === 0 ? `${Number(s.toFixed(2))} s` : `${Math.round(s * 1000)} ms`);

/** A step's policy in a few words, one part per setting it declares; [] for the defaults. */
export function policyParts(step) {
  if (!step) return [];
  const parts = [];
  if (step.retries !== null && step.retries !== undefined) {
    parts.push(step.retries === 0 ? 'no retries' : `${step.retries} ${step.retries === 1 ? 'retry' : 'retries'}`);
  }
  if (Array.isArray(step.backoff)) parts.push(`backoff ${seconds(step.backoff[0])}–${seconds(step.backoff[1])}`);
  if (step.timeout !== null && step.timeout !== undefined) parts.push(`timeout ${seconds(step.timeout)}`);
  if (step.max_in_flight !== null && step.max_in_flight !== undefined) parts.push(`≤ ${step.max_in_flight} at once`);
  if (step.rate !== null && step.rate !== undefined) parts.push(`≤ ${step.rate}/s${step.burst ? ` (bursts of ${step.burst})` : ''}`);
  if (step.tags?.length) parts.push(`on ${step.tags.join(', ')}`);
  if (step.async) parts.push('async');
  return parts;
}

/** A workflow's shape in one line: "payment → packing + invoice → shipping". */
export function workflowShape(workflow) {
  return layoutDag(workflow?.steps || []).levels.map((names) => names.join(' + ')).join(' → ');
}

/** The submit forms' choice after the server's list changed: keep `current` if it is still
 *  offered, else the first workflow (or '' while none is known). */
export function chooseWorkflow(names, current) {
  if (current && names.includes(current)) return current;
  return names[0] ?? '';
}

const TAKES_WORK = new Set(['alive', 'suspect']);

/** Whether a worker (as GET /api/workers lists it) can run a step (as workflow_details
 *  describes it): it has the step's handler (`steps` null: any) and offers its tags. */
export function canRun(worker, step) {
  if (Array.isArray(worker.steps) && !worker.steps.includes(step.name)) return false;
  const offered = new Set(worker.tags || []);
  return (step.tags || []).every((tag) => offered.has(tag));
}

/**
 * The steps only this worker can run among the live ones (alive or suspect): what would wait
 * instead of moving if it died. [{name, tags}] in workflow order, each step once.
 */
export function stepsOnlyItRuns(worker, workers, details) {
  const others = workers.filter((w) => w.id !== worker.id && TAKES_WORK.has(w.status));
  const seen = new Set();
  const only = [];
  for (const workflow of details) {
    for (const step of workflow.steps) {
      if (seen.has(step.name)) continue;
      seen.add(step.name);
      if (canRun(worker, step) && !others.some((w) => canRun(w, step))) only.push({ name: step.name, tags: step.tags || [] });
    }
  }
  return only;
}
