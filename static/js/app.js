// Wires the dashboard together: the store, the Socket.IO link, the order sync and the views.
// Socket handlers only update the store; one requestAnimationFrame callback redraws what
// changed, so however fast events arrive the DOM is touched at most once per frame.

import { api } from './api.js';
import { Connection } from './connection.js';
import { $, fmtInt, h, setText } from './dom.js';
import { serverRole } from './states.js';
import { CHART_WINDOWS, Store } from './store.js';
import { OrderSync } from './sync.js';
import { AlertBanners } from './views/alerts.js';
import { Chart } from './views/chart.js';
import { Confirm } from './views/confirm.js';
import { Controls } from './views/controls.js';
import { EventLog } from './views/eventlog.js';
import { RingView } from './views/ring.js';
import { StepControls } from './views/stepcontrols.js';
import { VersionMoves } from './views/versions.js';
import { SchedulesPanel } from './views/schedules.js';
import { StepBars } from './views/steps.js';
import { OrdersTable } from './views/table.js';
import { Tiles } from './views/tiles.js';
import { Timeline } from './views/timeline.js';
import { Liveness } from './views/liveness.js';
import { makeToaster } from './views/toast.js';
import { killMessage, WorkersView } from './views/workers.js';

// How often a page that cannot connect asks /healthz which server leads.
const ROLE_ASK_MS = 2000;

const STATUS_TEXT = {
  connecting: 'Connecting…',
  syncing: 'Syncing…',
  live: 'Live',
  silent: 'No word from the server',
  reconnecting: 'Connection lost',
  unauthorized: 'Token needed',
  offline: 'Offline',
};
// States in which a page that had the server's numbers can no longer trust them.
const LOST_STATES = new Set(['silent', 'reconnecting', 'unauthorized', 'offline']);
// How often a live page checks that it still hears from the server.
const SILENCE_CHECK_MS = 250;

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

export function start() {
  const store = new Store();
  const toast = makeToaster($('#toasts'));
  const frames = { count: 0, totalMs: 0, maxMs: 0, lastMs: 0 };

  let frameRequested = false;
  const schedule = () => {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(frame);
  };
  store.onDirty = schedule;

  const confirm = new Confirm({
    dialog: $('#confirm-dialog'), title: $('#confirm-title'), message: $('#confirm-message'),
    ok: $('#confirm-ok'), cancel: $('#confirm-cancel'),
  });
  const timeline = new Timeline({ root: $('#timeline'), title: $('#tl-title'), body: $('#tl-body'), close: $('#tl-close'), link: $('#tl-link') }, toast,
    (name) => store.workflow(name), confirm);
  const openOrder = (id) => timeline.open(id);
  const serverNow = () => store.serverNow();
  const tiles = new Tiles($('#tiles'));
  const alerts = new AlertBanners($('#alerts'));
  const chart = new Chart($('#chart'), serverNow);
  const stepBars = new StepBars($('#step-bars'), $('#steps-empty'));
  const stepControls = new StepControls($('#step-controls'), { confirm, toast });
  const versionMoves = new VersionMoves($('#version-moves-wrap'), $('#version-moves'), { confirm, toast });
  const schedules = new SchedulesPanel($('#schedules-wrap'), $('#schedules'), (id) => openOrder(id), toast);
  const ring = new RingView($('#ring'));
  const table = new OrdersTable({
    body: $('#orders-body'), spacer: $('#orders-spacer'), filters: $('#order-filters'),
    search: $('#order-search'), since: $('#order-since'), until: $('#order-until'), clear: $('#order-search-clear'),
    count: $('#order-count'), empty: $('#orders-empty'),
    triage: $('#triage'), groups: $('#failure-groups'), bulk: $('#bulk-bar'), bulkWhat: $('#bulk-what'),
    bulkRetry: $('#bulk-retry'), bulkCancel: $('#bulk-cancel'),
  }, store, openOrder, { confirm, toast, loadStatuses: (statuses) => sync.loadStatuses(statuses) });
  const log = new EventLog({
    list: $('#log-list'), groups: $('#log-groups'), search: $('#log-search'), empty: $('#log-empty'),
    incidents: $('#incidents'),
  }, openOrder, serverNow);
  table.onChange = schedule;
  log.onChange = () => {
    store.mark('log');
  };
  for (const w of CHART_WINDOWS) {
    const button = h('button', { type: 'button', class: 'seg', dataset: { window: w.key }, 'aria-pressed': String(w === CHART_WINDOWS[0]), text: w.label });
    button.addEventListener('click', () => {
      chart.setWindow(w.key);
      for (const other of $('#chart-window').children) other.setAttribute('aria-pressed', String(other === button));
      store.mark('chart');
    });
    $('#chart-window').append(button);
  }

  const sync = new OrderSync(store, { onError: (err) => toast(`Could not load orders: ${err.message}`, 'bad') });
  const liveness = new Liveness({
    labels: [$('#tiles-stale'), $('#workers-stale')], banner: $('#missed'),
    bannerText: $('#missed-text'), close: $('#missed-close'),
  }, store);
  const conn = new Connection(store, {
    onStatus: (state, detail) => {
      // A page that had the server's numbers stops trusting them at once.
      if (LOST_STATES.has(state) && store.lastSeq !== null) store.lose(state);
      liveness.show(state);
      const el = $('#conn');
      el.dataset.state = state;
      setText($('#conn-text'), STATUS_TEXT[state] || state);
      el.title = detail ? `${STATUS_TEXT[state]} (${detail})` : '';
      // A standby refuses the page's connection: its /healthz says which server leads.
      if (state === 'reconnecting' || state === 'offline') askServerRole();
      schedule();
    },
    onSnapshot: ({ staleFrom, initial }) => {
      sync.request({ staleFrom, initial });
      showServerRole(store.server);
      // The chart's past comes from the server (kept there for the last hour), once.
      if (!store.historyFetched) {
        store.historyFetched = true;
        api('/api/history').then((history) => store.loadHistory(history))
          .catch((err) => {
            store.historyFetched = false;
            toast(`Could not read the chart's history: ${err.message}`, 'bad');
          });
      }
    },
  });

  let roleAskedAt = 0;
  async function askServerRole() {
    const now = Date.now();
    if (now - roleAskedAt < ROLE_ASK_MS) return; // once per reconnect round at most
    roleAskedAt = now;
    try {
      const response = await fetch('/healthz', { cache: 'no-store' });
      showServerRole(await response.json());
    } catch {
      // Unreachable: the connection's status already says so.
    }
  }

  function showServerRole(server) {
    const el = $('#server-role');
    const role = serverRole(server);
    el.hidden = role === null;
    if (role === null) return;
    setText(el, role.text);
    el.title = role.title;
    el.dataset.tone = role.tone;
    if (role.href) el.setAttribute('href', role.href);
    else el.removeAttribute('href');
  }

  async function command(name, data, button, describe) {
    if (button) button.disabled = true;
    try {
      const reply = await conn.command(name, data);
      toast(describe(reply), 'good');
    } catch (err) {
      toast(err.message, 'bad');
    } finally {
      if (button) button.disabled = false;
      store.mark('workers'); // re-evaluate which buttons apply
    }
  }

  async function kill(id, button) {
    const worker = store.workers.find((w) => w.id === id);
    const ok = await confirm.ask({
      title: `Kill ${id}?`,
      message: killMessage(worker ?? { id }, store.workers, store.workflowDetails, store.config?.heartbeat_timeout),
      confirm: `Kill ${id}`,
    });
    if (ok) command('kill_worker', id, button, (r) => r.message);
  }

  const workers = new WorkersView($('#worker-cards'), {
    kill,
    drain: (id, button) => command('drain_worker', id, button, (r) => r.message),
    openOrder,
    hover: (id) => ring.highlight(id),
  });
  $('#add-worker').addEventListener('click', (event) => {
    command('add_worker', { count: 1 }, event.currentTarget, (r) => `Worker ${r.ids.join(', ')} joined the ring`);
  });

  const controls = new Controls({
    orderForm: $('#order-form'), customer: $('#f-customer'), sku: $('#f-sku'), qty: $('#f-qty'),
    price: $('#f-price'), workflow: $('#f-workflow'), priority: $('#f-priority'), orderButton: $('#f-submit'),
    demoForm: $('#demo-form'), demoCount: $('#f-demo-count'), demoWorkflow: $('#f-demo-workflow'),
    demoButton: $('#f-demo-submit'),
    failure: $('#c-failure'), failureOut: $('#c-failure-out'), latMin: $('#c-lat-min'),
    latMax: $('#c-lat-max'), latencyOut: $('#c-latency-out'), chaosState: $('#c-state'),
    knobs: $('#chaos-knobs'), other: $('#chaos-other'), title: $('#chaos-title'),
  }, {
    connection: conn, store, toast,
    onOrder: (order) => {
      store.orders.upsert(order, store.lastSeq ?? 0);
      store.mark('orders');
    },
  });

  // A worker joined or left: the ring changed. The stream does not carry the ring, so read it.
  const refreshRing = debounce(async () => {
    try {
      const data = await api('/api/workers');
      store.setWorkers(data.workers);
      store.setRing(data.ring);
    } catch (err) {
      toast(`Could not read the ring: ${err.message}`, 'bad');
    }
  }, 120);
  store.onWorkersChanged = refreshRing;
  store.onOrderEvent = (ev) => {
    timeline.onEvent(ev);
    table.onEvent(ev);
  };

  let lastAlertTick = null; // the banners' "for N s" moves once a second
  function frame() {
    frameRequested = false;
    const started = performance.now();
    const dirty = store.takeDirty();
    // Ages move once a second, and are written once more (frozen) when the server is lost.
    const tick = store.lost ? 'lost' : Math.floor(Date.now() / 1000);
    // The table first: it reads scroll geometry, which is free only before anything is written.
    table.render(tick);
    if (dirty.has('stats') || tick !== lastAlertTick) {
      lastAlertTick = tick;
      alerts.render(store.stats?.alerts, store.stats ? serverNow() : null);
    }
    if (dirty.has('stats')) {
      tiles.render(store.stats);
      stepBars.render(store.stats.steps || {}, store.workflowDetails);
      stepControls.noteStats(store.stats);
      versionMoves.render(store.stats);
      schedules.noteStats();
    }
    // Worker cards measure heartbeats against the server's settings, which come with the
    // first snapshot (as do the workers themselves).
    if ((dirty.has('workers') || dirty.has('stats')) && store.config) {
      workers.render(store.workers, store.config);
      const alive = store.workers.filter((w) => w.status === 'alive' || w.status === 'suspect' || w.status === 'draining').length;
      setText($('#workers-summary'), `${fmtInt(alive)} alive of ${fmtInt(store.workers.length)}`);
    }
    if (dirty.has('ring')) ring.render(store.ring);
    if (dirty.has('chart')) chart.render(store.series);
    if (dirty.has('log')) log.render(store.log, store.incidents);
    if (dirty.has('chaos')) controls.render();
    if (dirty.has('live')) liveness.render();
    if (dirty.has('workflows')) controls.renderWorkflows(store.workflowDetails);
    if (store.orders.stubs > 0 && store.lastSeq !== null) sync.request({ stubs: true });
    const ms = performance.now() - started;
    frames.count++;
    frames.totalMs += ms;
    frames.lastMs = ms;
    if (ms > frames.maxMs) frames.maxMs = ms;
  }

  // Once a second: ages of running orders move, and the chart slides even when idle (both
  // stand still while the server is lost: serverNow stops), and "last known, N s ago" counts.
  setInterval(() => {
    store.mark('chart');
    liveness.show(conn.state);
    schedule();
  }, 1000);
  setInterval(() => conn.checkSilence(), SILENCE_CHECK_MS);

  // For people debugging in the console and for the browser tests' measurements.
  window.orderflowDashboard = { store, table, sync, conn, frames, timeline, chart, log, liveness };
  conn.start();
  // An order named in the address (a shared link, a reload) opens at once: it is read over
  // HTTP, so it need not wait for the stream.
  timeline.followAddress();
  schedule();
}
