// Completed orders per second and queue depth over the last five minutes (uPlot).

import uPlot from '/vendor/uPlot.esm.js';
import { CHART_SECONDS as WINDOW } from '../store.js';

const two = (n) => String(n).padStart(2, '0');

function clock(t) {
  const d = new Date(t * 1000);
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** Legend values: under the cursor, or the newest point when the cursor is elsewhere. */
function latest(format) {
  return (u, v, seriesIndex, dataIndex) => {
    const data = u.data[seriesIndex];
    const value = dataIndex === null || dataIndex === undefined ? data[data.length - 1] : v;
    return value === null || value === undefined ? '–' : format(value);
  };
}
const AXIS = { stroke: '#9aa7b8', grid: { stroke: 'rgba(140,160,185,0.12)', width: 1 }, ticks: { show: false }, font: '11px system-ui, sans-serif' };

export class Chart {
  constructor(root) {
    this.root = root;
    this.now = Date.now() / 1000;
    const chart = this;
    const opts = {
      width: Math.max(200, root.clientWidth),
      height: Math.max(100, root.clientHeight),
      padding: [8, 4, 0, 0],
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { show: true, live: true },
      scales: {
        x: { time: true, range: () => [chart.now - WINDOW, chart.now] },
        rate: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] },
        depth: { range: (u, min, max) => [0, Math.max(5, max * 1.15)] },
      },
      axes: [
        { ...AXIS, space: 70, values: (u, ticks) => ticks.map(clock) },
        { ...AXIS, scale: 'rate', size: 44, label: 'completed / s', labelSize: 16, labelFont: '11px system-ui, sans-serif' },
        { ...AXIS, scale: 'depth', side: 1, size: 44, grid: { show: false }, label: 'queued tasks', labelSize: 16, labelFont: '11px system-ui, sans-serif' },
      ],
      series: [
        {},
        {
          label: 'Completed orders/s', scale: 'rate', stroke: '#009E73', width: 2,
          fill: 'rgba(0,158,115,0.16)', value: latest((v) => v.toFixed(1)),
        },
        {
          label: 'Queue depth (tasks)', scale: 'depth', stroke: '#56B4E9', width: 1.5, dash: [5, 4],
          value: latest((v) => String(Math.round(v))),
        },
      ],
    };
    this.plot = new uPlot(opts, [[], [], []], root);
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(root);
  }

  resize() {
    const legend = this.root.querySelector('.u-legend');
    const height = this.root.clientHeight - (legend ? legend.offsetHeight : 0);
    const width = this.root.clientWidth;
    if (width > 0 && height > 40) this.plot.setSize({ width, height });
  }

  render(series) {
    this.now = Date.now() / 1000;
    this.plot.setData([series.t, series.completed, series.queued]);
  }
}
