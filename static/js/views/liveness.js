// Honest liveness: a page that cannot hear its server never looks live. The moment the
// connection drops (or the server falls silent), the body is marked `data-live="lost"` (the
// stylesheet greys the tiles, the charts and the worker cards), the page's clocks stop (the
// store's serverNow), and labels say how old the numbers are: "last known, 4 s ago". Once it
// is back, a banner says what it missed meanwhile, as the server counts it.

import { fmtInt, plural, setText } from '../dom.js';

// The server sends `workers` every config.workers_interval (0.5 s): a page that hears
// nothing for two of those (and at least a second) says its numbers are old.
const SILENCE_MIN_MS = 1000;

/** How long a live page may hear nothing before it says the server is silent (ms). */
export function silenceLimitMs(config) {
  const interval = config?.workers_interval;
  return Math.max(SILENCE_MIN_MS, typeof interval === 'number' ? 2 * interval * 1000 : 0);
}

/** Why the page cannot hear the server, in words. */
const WHY = {
  silent: 'no word from the server',
  reconnecting: 'connection lost',
  offline: 'server unreachable',
  unauthorized: 'the server asks for a token',
  syncing: 'reconnected, catching up',
};

/** "last known, 4 s ago" (seconds since `lostAt`, Date.now() ms, at `now`). */
export function staleText(lostAt, now = Date.now()) {
  const seconds = Math.max(0, Math.floor((now - lostAt) / 1000));
  return `last known, ${fmtDuration(seconds)} ago`;
}

function fmtDuration(seconds) {
  if (seconds < 120) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 120 ? `${minutes} min` : `${Math.floor(minutes / 60)} h`;
}

/** The banner after a reconnect: how long the page was away and what it missed. */
export function missedText(missed) {
  const away = `Back after ${fmtDuration(Math.round(missed.seconds))}`;
  if (missed.silent) return `${away}: the server was silent meanwhile; nothing was missed.`;
  const parts = [];
  if (missed.events === null) parts.push('the server restarted without its journal: what it knew before is gone');
  else parts.push(plural(missed.events, 'event'));
  parts.push(`${fmtInt(missed.completed)} orders completed`);
  parts.push(`${fmtInt(missed.failed)} failed`);
  for (const incident of missed.incidents.slice(0, 3)) parts.push(incident.title);
  if (missed.incidents.length > 3) parts.push(`${fmtInt(missed.incidents.length - 3)} more incidents`);
  return `${away}. Missed meanwhile: ${parts.join(' · ')}.`;
}

export class Liveness {
  /** els: {labels: [elements showing "last known, N s ago"], banner, bannerText, close} */
  constructor(els, store) {
    this.els = els;
    this.store = store;
    this.greyedAt = null; // performance.now() when the page last greyed (for tests)
    els.close.addEventListener('click', () => {
      els.banner.hidden = true;
      store.dismissMissed();
    });
  }

  /** Mark the page live or not at once (not at the next frame: a lost server must not look
   *  live for a moment longer), and refresh the labels. */
  show(state) {
    const lost = this.store.lost;
    const value = lost ? 'lost' : 'live';
    if (document.body.dataset.live !== value) {
      document.body.dataset.live = value;
      if (lost) this.greyedAt = performance.now();
    }
    const why = lost ? (WHY[state] || WHY[lost.reason] || 'not live') : '';
    for (const label of this.els.labels) {
      label.hidden = !lost;
      if (lost) {
        setText(label, staleText(lost.at));
        label.title = `${why}: these are the numbers of ${new Date(lost.at).toLocaleTimeString()}`;
      }
    }
  }

  /** After a reconnect: say what was missed (until dismissed, or the next loss). */
  render() {
    const missed = this.store.missed;
    if (this.store.lost || !missed) {
      this.els.banner.hidden = true;
      return;
    }
    if (this.shown === missed) return;
    this.shown = missed;
    setText(this.els.bannerText, missedText(missed));
    this.els.banner.hidden = false;
  }
}
