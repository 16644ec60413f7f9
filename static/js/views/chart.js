// Throughput, failures and queue depth over the last 5 minutes or the last hour (uPlot). The
// points are the server's numbers: its last hour (GET /api/history) and then each `workers`
// message's stats, so the legend's newest values are the tiles' values.

import uPlot from '/vendor/uPlot.esm.js';
import { fmtRate } from '../dom.js';
import { CHART_WINDOWS } from '../store.js';

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
const LABEL_FONT = '11px system-ui, sans-serif';

// The series after x, in the order of `Chart.data`.
export const SERIES = [
  { key: 'orders', label: 'Orders/s', scale: 'rate', stroke: '#009E73', width: 2, fill: 'rgba(0,158,115,0.14)', format: fmtRate },
  { key: 'steps', label: 'Steps/s', scale: 'rate', stroke: '#0072B2', width: 1.5, format: fmtRate },
  { key: 'failures', label: 'Failed attempts/s', scale: 'rate', stroke: '#D55E00', width: 1.5, format: fmtRate },
  { key: 'queued', label: 'Queue depth (tasks)', scale: 'depth', stroke: '#56B4E9', width: 1.5, dash: [5, 4], format: (v) => String(Math.round(v)) },
];

export class Chart {
  /** root: where the plot goes; now(): server time in seconds */
  constructor(root, now = () => Date.now() / 1000) {
    this.root = root;
    this.serverNow = now;
    this.now = now();
    this.window = CHART_WINDOWS[0];
    const chart = this;
    const opts = {
      width: Math.max(200, root.clientWidth),
      height: Math.max(120, root.clientHeight),
      padding: [8, 4, 0, 0],
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { show: true, live: true },
      scales: {
        x: { time: true, range: () => [chart.now - chart.window.seconds, chart.now] },
        rate: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] },
        depth: { range: (u, min, max) => [0, Math.max(5, max * 1.15)] },
      },
      axes: [
        { ...AXIS, space: 70, values: (u, ticks) => ticks.map(clock) },
        { ...AXIS, scale: 'rate', size: 44, label: 'per second', labelSize: 16, labelFont: LABEL_FONT },
        { ...AXIS, scale: 'depth', side: 1, size: 44, grid: { show: false }, label: 'queued tasks', labelSize: 16, labelFont: LABEL_FONT },
      ],
      series: [{}, ...SERIES.map(({ key, format, ...style }) => ({ ...style, value: latest(format) }))],
    };
    this.plot = new uPlot(opts, [[], ...SERIES.map(() => [])], root);
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(root);
  }

  /** Show the last `key` ('5m' or '1h') of what is held. */
  setWindow(key) {
    this.window = CHART_WINDOWS.find((w) => w.key === key) || CHART_WINDOWS[0];
  }

  resize() {
    const legend = this.root.querySelector('.u-legend');
    const height = this.root.clientHeight - (legend ? legend.offsetHeight : 0);
    const width = this.root.clientWidth;
    if (width > 0 && height > 40) this.plot.setSize({ width, height });
  }

  render(series) {
    this.now = this.serverNow();
    this.plot.setData([series.t, ...SERIES.map(({ key }) => series[key])]);
  }
}
