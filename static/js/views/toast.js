// Short notices for the result of a command, read out by screen readers (aria-live).

import { h } from '../dom.js';

const SHOW_MS = 4500;
const MAX = 4;

export function makeToaster(root) {
  return function toast(message, tone = 'info') {
    const item = h('div', { class: `toast tone-${tone}`, role: tone === 'bad' ? 'alert' : 'status', text: message });
    root.append(item);
    while (root.childElementCount > MAX) root.firstElementChild.remove();
    setTimeout(() => item.remove(), SHOW_MS);
  };
}
