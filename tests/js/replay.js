// Not a test file: tests/test_browser_contract.py runs it to replay the engine's events
// through the page's order book. Reads {workflows, checkpoints: [[event, ...], ...]} on
// stdin; writes, after each checkpoint's events, {order id: {status, stage, tasks: {step: status}}}.

import { readFileSync } from 'node:fs';

import { OrderBook } from '../../static/js/orders.js';

const input = JSON.parse(readFileSync(0, 'utf8'));
const book = new OrderBook();
book.configure({ maxOrders: Number.MAX_SAFE_INTEGER, workflows: input.workflows });
const views = input.checkpoints.map((events) => {
  for (const ev of events) book.apply(ev);
  return Object.fromEntries(book.list.map((rec) => [rec.id, {
    status: rec.status,
    stage: rec.stage,
    tasks: Object.fromEntries(rec.steps.map((step) => [step, rec.tasks[step].status])),
  }]));
});
process.stdout.write(JSON.stringify(views));
