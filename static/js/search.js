// An order search as the page holds it: the box's text (a part of an order's id, customer,
// SKU, error or workflow), the stage filter and a submission time range. It is the page's
// address too (?q=...&stage=failed&from=...&to=...), so a search can be shared and a reload
// keeps it. Pure: no DOM, so node tests read it as the page does.

/** The stages GET /api/orders can narrow by one status (the rest the page narrows itself). */
const ONE_STATUS = { completed: 'completed', failed: 'failed', cancelled: 'cancelled' };
const STAGES = new Set(['all', 'queued', 'running', 'retrying', 'completed', 'failed', 'cancelled']);
// A time as a datetime-local input writes it (local time, to the minute or second).
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/;

/** {q, stage, from, to}: nothing searched, every stage. */
export function emptySearch() {
  return { q: '', stage: 'all', from: '', to: '' };
}

/** Whether the search asks the server for anything (text or a time bound). */
export function isActive(search) {
  return Boolean(search.q.trim() || search.from || search.to);
}

/** A search read from the page's address (`location.search`); what it cannot use is left
 *  out (an unknown stage, a malformed time), the text cut to `maxText`. */
export function searchFromLocation(query, maxText = 32) {
  const params = new URLSearchParams(query);
  const search = emptySearch();
  search.q = (params.get('q') || '').slice(0, maxText);
  const stage = params.get('stage');
  if (stage && STAGES.has(stage)) search.stage = stage;
  for (const key of ['from', 'to']) {
    const value = params.get(key) || '';
    if (LOCAL_TIME.test(value) && Number.isFinite(toSeconds(value))) search[key] = value;
  }
  return search;
}

/** The address's query string for a search ("" for none): only what is set. */
export function searchToLocation(search) {
  const params = new URLSearchParams();
  if (search.q.trim()) params.set('q', search.q.trim());
  if (search.stage !== 'all') params.set('stage', search.stage);
  if (search.from) params.set('from', search.from);
  if (search.to) params.set('to', search.to);
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** A datetime-local value as Unix seconds (local time), or NaN. */
export function toSeconds(local) {
  return new Date(local).getTime() / 1000;
}

/** GET /api/orders's query string for a search: text, time bounds, and the status when the
 *  stage is one status (the page narrows queued, running and retrying itself). */
export function apiQuery(search, limit) {
  const params = new URLSearchParams();
  const q = search.q.trim();
  if (q) params.set('text', q);
  if (search.from) params.set('since', String(toSeconds(search.from)));
  if (search.to) params.set('until', String(toSeconds(search.to)));
  if (ONE_STATUS[search.stage]) params.set('status', ONE_STATUS[search.stage]);
  params.set('limit', String(limit));
  return params.toString();
}

/** Whether an order the page holds matches the search's text and time range, from what the
 *  page knows of it: id, customer, workflow, its steps' errors, and its SKUs once read
 *  whole. The server's answer is the full one (it reads every SKU and the journal). */
export function matchesHeld(rec, search) {
  const at = rec.submittedAt;
  if (search.from && !(at >= toSeconds(search.from))) return false;
  if (search.to && !(at < toSeconds(search.to))) return false;
  const q = search.q.trim().toLowerCase();
  if (!q) return true;
  const texts = [rec.id, rec.customer, rec.workflow, ...(rec.skus || [])];
  for (const step of rec.steps || []) texts.push(rec.tasks?.[step]?.error);
  return texts.some((text) => typeof text === 'string' && text.toLowerCase().includes(q));
}

/** What a search looked for, in words, for the line that says nothing matched. `when(t)`
 *  writes a time bound. */
export function describeSearch(search, stageLabel, when = (value) => value.replace('T', ' ')) {
  const parts = [];
  const q = search.q.trim();
  if (q) parts.push(`“${q}” in an id, customer, SKU, error or workflow`);
  if (search.stage !== 'all') parts.push(`${stageLabel.toLowerCase()} only`);
  if (search.from && search.to) parts.push(`submitted from ${when(search.from)} to ${when(search.to)}`);
  else if (search.from) parts.push(`submitted from ${when(search.from)}`);
  else if (search.to) parts.push(`submitted before ${when(search.to)}`);
  return parts.join('; ');
}
