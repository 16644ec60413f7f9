// Moving orders off an old workflow version: one row per definition the running app lacks
// that still has unfinished orders, with the versions it may move to and a button. The
// button asks the server first (a dry run), then says in the confirmation how many orders
// move and what happens to their steps; only a yes moves them (POST /api/definitions/
// migrate, audited). Every text is set with textContent.

import { api } from '../api.js';
import { fmtInt, h, plural, setText } from '../dom.js';

const versionOf = (d) => (d.version ? `${d.workflow} ${d.version}` : d.workflow);

/** Old definitions with unfinished orders, and the running app's (where they may go). */
export function movable(stats) {
  const all = stats?.definitions || [];
  return {
    old: all.filter((d) => !d.current && (d.unfinished || 0) > 0),
    targets: all.filter((d) => d.current),
  };
}

/** What a dry run says will happen, in words for the confirmation. */
export function planText(plan, from, to) {
  const count = plan.count || 0;
  const sum = (key) => (plan.orders || []).reduce((n, o) => n + (o[key] || []).length, 0);
  const parts = [`${plural(count, 'unfinished order')} of ${from} move to ${to}.`,
    `Steps that succeeded are kept; ${plural(sum('skipped'), 'step')} added before steps that ran will be skipped (not run);`,
    `${plural(sum('dropped'), 'step')} the new version lacks will be dropped; ${plural(sum('to_run'), 'step')} left to run.`];
  return parts.join(' ');
}

/** The row's signature: a change means it must be drawn again. */
const signature = ({ old, targets }) => JSON.stringify([
  old.map((d) => [d.key, d.unfinished]), targets.map((d) => d.key)]);

export class VersionMoves {
  /** root: the container (hidden while nothing is old); deps: {confirm, toast} */
  constructor(root, list, { confirm, toast }) {
    this.root = root;
    this.list = list;
    this.confirm = confirm;
    this.toast = toast;
    this.drawn = null;
    this.busy = false;
  }

  render(stats) {
    const found = movable(stats);
    const sig = signature(found);
    if (sig === this.drawn) return;
    this.drawn = sig;
    this.root.hidden = found.old.length === 0 || found.targets.length === 0;
    this.list.replaceChildren(...found.old.map((d) => this._row(d, found.targets)));
  }

  _row(definition, targets) {
    const select = h('select', { class: 'vm-target', 'aria-label': `Move the orders of ${versionOf(definition)} to` },
      ...targets.map((t) => h('option', { value: t.key, text: versionOf(t) })));
    const button = h('button', { type: 'button', class: 'btn btn-danger vm-move', text: 'Move orders…' });
    const row = h('tr', { class: 'version-move', dataset: { key: definition.key } },
      h('td', { text: versionOf(definition) }),
      h('td', { class: 'num', text: fmtInt(definition.unfinished) }),
      h('td', {}, select),
      h('td', {}, button));
    button.addEventListener('click', () => this._move(definition, select.value, versionOf(targets.find((t) => t.key === select.value) || { workflow: select.value })));
    return row;
  }

  async _move(definition, target, targetName) {
    if (this.busy) return;
    this.busy = true;
    const from = versionOf(definition);
    try {
      const body = { from: definition.key, to: target };
      const plan = await api('/api/definitions/migrate', { method: 'POST', body: { ...body, dry_run: true } });
      if (!plan.count) {
        this.toast(`No unfinished order of ${from} is left to move`, 'info');
        return;
      }
      const ok = await this.confirm.ask({
        title: `Move ${plural(plan.count, 'order')} to ${targetName}?`,
        message: planText(plan, from, targetName),
        confirm: `Move ${plural(plan.count, 'order')}`,
      });
      if (!ok) return;
      const done = await api('/api/definitions/migrate', { method: 'POST', body: { ...body, dry_run: false } });
      this.toast(`Moved ${plural(done.count, 'order')} from ${from} to ${targetName}`, 'good');
    } catch (err) {
      this.toast(`Could not move the orders of ${from}: ${err.message}`, 'bad');
    } finally {
      this.busy = false;
    }
  }
}
