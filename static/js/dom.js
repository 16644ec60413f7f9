// DOM helpers: every element is built with createElement and every piece of data goes in as
// text (textContent / text nodes), never as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function setProps(el, props) {
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child)); // strings become text nodes
  }
}

/** h('div', {class: 'x', text: 'y'}, ...children): an HTML element. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

/** The same for SVG elements. */
export function svg(tag, props = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Set text only when it changed: cheap to call on every frame. */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function setClass(el, className) {
  if (el.className !== className) el.className = className;
}

// ---------------------------------------------------------------------------- formatting

const INT = new Intl.NumberFormat('en-US');

export const fmtInt = (n) => (n === null || n === undefined ? '–' : INT.format(n));

/** "1 order", "2 orders", "1,000 orders". */
export const plural = (count, one, many = `${one}s`) => `${fmtInt(count)} ${count === 1 ? one : many}`;

export function fmtRate(perSecond) {
  if (perSecond === null || perSecond === undefined) return '–';
  return perSecond >= 100 ? INT.format(Math.round(perSecond)) : perSecond.toFixed(1);
}

/** 0.042 -> "42 ms", 3.2 -> "3.2 s", 75 -> "1m 15s". */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  if (seconds < 0) seconds = 0;
  if (seconds > 0 && seconds < 0.0005) return '<1 ms';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m}m ${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
}

/** Epoch seconds -> local "13:04:05.123". */
export function fmtClock(ts) {
  if (!ts) return '–';
  const d = new Date(ts * 1000);
  const two = (n) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

export const fmtPct = (fraction) => `${(fraction * 100).toFixed(1)}%`;
