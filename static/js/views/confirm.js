// A confirmation before a command that cannot be taken back (kill a worker, retry or cancel
// many orders): a modal <dialog> that says what will happen and to how many, with the
// action's own words on its button. Escape or "Keep" says no.

import { setText } from '../dom.js';

export class Confirm {
  /** els: {dialog, title, message, ok, cancel} */
  constructor(els) {
    this.els = els;
    this.resolve = null;
    els.ok.addEventListener('click', () => this._answer(true));
    els.cancel.addEventListener('click', () => this._answer(false));
    els.dialog.addEventListener('cancel', (event) => {
      event.preventDefault(); // Escape: answered here, so the promise always settles
      this._answer(false);
    });
  }

  /** Resolves true if the user confirmed. A second ask while one is open answers no to the first. */
  ask({ title, message, confirm, tone = 'danger' }) {
    this._answer(false);
    const { dialog } = this.els;
    setText(this.els.title, title);
    setText(this.els.message, message);
    setText(this.els.ok, confirm);
    this.els.ok.className = tone === 'danger' ? 'btn btn-danger-solid' : 'btn btn-primary';
    dialog.dataset.tone = tone;
    return new Promise((resolve) => {
      this.resolve = resolve;
      dialog.showModal();
      this.els.cancel.focus(); // the safe choice has the focus
    });
  }

  _answer(yes) {
    const resolve = this.resolve;
    this.resolve = null;
    if (this.els.dialog.open) this.els.dialog.close();
    resolve?.(yes);
  }
}
