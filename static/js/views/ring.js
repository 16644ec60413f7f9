// The consistent-hash ring as a circle: each worker's arcs in its colour, redrawn only when
// membership changes. Arcs come as [start, end, worker] fractions of the circle.

import { fmtPct, svg } from '../dom.js';
import { workerColour } from '../states.js';

const R = 74;
const WIDTH = 20;

function point(fraction) {
  const angle = fraction * 2 * Math.PI - Math.PI / 2; // 0 at twelve o'clock, clockwise
  return [(R * Math.cos(angle)).toFixed(2), (R * Math.sin(angle)).toFixed(2)];
}

function arcPath(start, end) {
  const [x1, y1] = point(start);
  const [x2, y2] = point(end);
  const large = end - start > 0.5 ? 1 : 0;
  return `M${x1} ${y1}A${R} ${R} 0 ${large} 1 ${x2} ${y2}`;
}

/** Adjacent arcs of one worker merged, sorted by start. */
export function mergeArcs(arcs) {
  const sorted = [...arcs].sort((a, b) => a[0] - b[0]);
  const out = [];
  for (const [start, end, worker] of sorted) {
    const last = out[out.length - 1];
    if (last && last[2] === worker && Math.abs(last[1] - start) < 1e-9) last[1] = end;
    else out.push([start, end, worker]);
  }
  return out;
}

export class RingView {
  constructor(root) {
    this.root = root;
    this.groups = new Map();
    this.focus = null;
    this.svg = svg('svg', { viewBox: '-100 -100 200 200', role: 'img', 'aria-label': 'hash ring' });
    this.svg.append(svg('circle', { r: R, class: 'ring-track' }));
    this.arcs = svg('g', { class: 'ring-arcs' });
    this.count = svg('text', { class: 'ring-count', y: '4', 'text-anchor': 'middle' });
    this.caption = svg('text', { class: 'ring-caption', y: '22', 'text-anchor': 'middle' });
    this.svg.append(this.arcs, this.count, this.caption);
    root.append(this.svg);
  }

  render(ring) {
    this.arcs.replaceChildren();
    this.groups.clear();
    const byWorker = new Map();
    for (const [start, end, worker] of mergeArcs(ring.arcs || [])) {
      if (!byWorker.has(worker)) byWorker.set(worker, []);
      byWorker.get(worker).push(arcPath(start, end));
    }
    for (const [worker, paths] of byWorker) {
      const share = ring.shares?.[worker] ?? 0;
      const group = svg('g', { class: 'ring-worker', dataset: { worker } },
        svg('title', { text: `${worker}: ${fmtPct(share)} of the ring` }),
        svg('path', { d: paths.join(''), stroke: workerColour(worker), 'stroke-width': WIDTH, fill: 'none' }));
      this.arcs.append(group);
      this.groups.set(worker, group);
    }
    this.count.textContent = String(byWorker.size);
    this.caption.textContent = byWorker.size === 1 ? 'worker on ring' : 'workers on ring';
    this.svg.setAttribute('aria-label', `hash ring with ${byWorker.size} workers`);
    this.highlight(this.focus); // the hovered worker may just have left the ring
  }

  highlight(worker) {
    this.focus = worker;
    // A worker off the ring (dead, drained) has nothing to show: dim nothing.
    this.svg.classList.toggle('has-focus', this.groups.has(worker));
    for (const [id, group] of this.groups) group.classList.toggle('focus', id === worker);
  }
}
