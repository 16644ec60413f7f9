// The server's active alerts (scheduler/runtime/alerts.py) as banners under the top bar, one
// per alert, in the server's words, with how long it has held. They come with the numbers
// (every snapshot and every workers message), so a banner appears and goes with the server's
// own evaluation: nothing here decides what is wrong. Each alert is also an incident in the
// event log, which keeps it once it has cleared.

import { h, setText } from '../dom.js';
import { KeyedRows } from './keyed.js';

export const ALERT_TITLES = {
  failure_spike: 'Failure spike',
  unroutable: 'No worker can run it',
  overdue_orders: 'Orders overdue',
  worker_flapping: 'Worker flapping',
  journal_failing: 'Journal failing',
};

/** "for 12 s", "for 3 min", "for 2 h 5 min": how long an alert has held at `now` (s). */
export function heldFor(since, now) {
  const s = Math.max(0, Math.floor(now - since));
  if (s < 60) return `for ${s} s`;
  if (s < 3600) return `for ${Math.floor(s / 60)} min`;
  const m = Math.floor((s % 3600) / 60);
  return `for ${Math.floor(s / 3600)} h${m ? ` ${m} min` : ''}`;
}

export class AlertBanners {
  /** root: the banners' container; hidden while no alert is active. */
  constructor(root) {
    this.root = root;
    // By "alert:subject": {el, title, message, since}.
    this.rows = new KeyedRows(root, (key, alert) => {
      const row = {
        title: h('b', { class: 'alert-title' }),
        message: h('span', { class: 'alert-message' }),
        since: h('span', { class: 'alert-since muted small' }),
      };
      row.el = h('div', { class: 'alert-banner', role: 'alert', dataset: { alert: alert.alert, subject: alert.subject } },
        row.title, row.message, row.since);
      return row;
    });
  }

  /** alerts: the server's list (oldest first); now: the server's clock (s) or null. */
  render(alerts, now) {
    this.rows.render(alerts || [], (alert) => `${alert.alert}:${alert.subject}`, (row, alert) => {
      setText(row.title, ALERT_TITLES[alert.alert] || alert.alert);
      setText(row.message, alert.message);
      setText(row.since, now === null || now === undefined ? '' : heldFor(alert.since, now));
    });
    this.root.hidden = this.rows.size === 0;
  }
}
