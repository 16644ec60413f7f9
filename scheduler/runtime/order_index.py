"""An index of the orders in memory that a search reads without the scheduler lock.

Searching used to walk every order under the scheduler lock: 40,000 unfinished orders and a
few clients searching for a customer nobody has stalled every submit. The index keeps, per
order, what a search filters on and never changes (number, workflow, customer, submission
time) next to the live `Order`, whose status and step errors it reads as they are.

Orders sit in blocks of BLOCK, in number order. Each block carries what lets a search pass
it over whole: the workflows in it, its earliest and latest submission, how many of its
orders are unfinished or in each finished status, how many ever had a step error, and (once
full) its orders' customers casefolded and joined in one string, so a customer that is not
in the block costs one `str.rfind`, in C; and likewise what never changes of each order that
the search box looks in (id, workflow, customer, SKUs), so a SKU or a text that is in none of
them costs one more (a text may also be in a step's error: the block's orders that ever had
one are checked too). A search that matches nothing over 50,000 orders costs about a hundred
block checks.

Writers (`add`, `apply`) run under the scheduler lock, one at a time, and only append or
replace: a block's contents (`view`: items, text, starts) are one tuple replaced whole, the
block list is replaced whole when a block goes. A reader takes a reference and reads it
without a lock; it sees each block as it was at some moment of the search, which is all a
search promises. Its counts are hints that may lag a change by the moment the writer takes to
make it; the caller checks every order it returns again, under the lock.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator

from ..engine.model import Effects, Order
from ..engine.records import FINISHED_STATUSES, OrderQuery, skus_of
from ..engine.states import TaskState

# Orders per block: a full block's customers are one string; a block is rebuilt (O(BLOCK))
# once half of it is forgotten, and dropped once empty.
BLOCK = 512
# The status class of an order that is not finished (pending and in_progress alike: the
# scheduler does not announce that change, so the index does not count it).
UNFINISHED = "unfinished"
# Moves that give a step an error: a failed attempt waits to retry, or the step failed.
_RETRY_WAIT, _FAILED = TaskState.RETRY_WAIT, TaskState.FAILED
_SEPARATOR = "\x00"
_FIELD_SEPARATOR = "\x01"


class Entry:
    """One order: its search fields (fixed but for a workflow an operator moves it from)
    and the live `Order` (status, errors)."""

    __slots__ = ("order", "number", "id", "workflow", "submitted", "status", "errored",
                 "block", "alive")

    def __init__(self, order: Order, submitted: float):
        self.order = order
        self.number = order.number
        self.id = order.id
        self.workflow = order.workflow.name
        self.submitted = submitted  # wall clock
        self.status = status_class(order.reported_status)
        self.errored = any(t.error is not None for t in order.tasks.values())
        self.block: Block | None = None
        self.alive = True

    @property
    def customer(self) -> str:
        """The customer casefolded, as searches compare it ("" if there is none)."""
        customer = self.order.data.get("customer")
        return customer.casefold() if isinstance(customer, str) else ""

    @property
    def fixed_text(self) -> str:
        """What never changes of the order that a SKU or text search looks in (id, workflow,
        customer, SKUs), casefolded and joined."""
        return _FIELD_SEPARATOR.join(
            (self.id.casefold(), self.workflow.casefold(), self.customer,
             *(sku.casefold() for sku in skus_of(self.order.data))))

    def matches(self, query: OrderQuery) -> bool:
        """The search's own predicate, on the order as it is now."""
        order = self.order
        return query.matches(order.reported_status, self.workflow, order.data.get("customer"),
                             self.submitted, (t.error for t in order.tasks.values()),
                             order_id=self.id,
                             skus=skus_of(order.data)
                             if query.sku is not None or query.text is not None else ())


def status_class(status: str) -> str:
    return status if status in FINISHED_STATUSES else UNFINISHED


class Block:
    """Entries in number order, with what a search needs to pass them over. Only the newest
    block grows (to BLOCK entries); every other one has its customers joined."""

    __slots__ = ("view", "low", "high", "workflows", "earliest", "latest", "counts",
                 "errored", "dead")

    def __init__(self, items: list[Entry], growing: bool = True):
        self.fill(items, growing)

    def fill(self, items: list[Entry], growing: bool) -> None:
        """(Re)set the contents; `growing`: the newest block, whose text waits until full."""
        # Summaries first, the view last: a reader that sees the new view sees them too.
        self.dead = 0
        self.low, self.high = items[0].number, items[-1].number
        self.workflows = {e.workflow for e in items}
        self.earliest = min(e.submitted for e in items)
        self.latest = max(e.submitted for e in items)
        counts: dict[str, int] = {}
        for e in items:
            counts[e.status] = counts.get(e.status, 0) + 1
            e.block = self
        self.counts = counts
        self.errored = sum(1 for e in items if e.errored)
        self.view = (items, None, None, None, None) if growing and len(items) < BLOCK \
            else _sealed(items)

    def append(self, entry: Entry) -> None:
        items = self.view[0]
        entry.block = self
        self.workflows.add(entry.workflow)
        self.earliest = min(self.earliest, entry.submitted)
        self.latest = max(self.latest, entry.submitted)
        self.counts[entry.status] = self.counts.get(entry.status, 0) + 1
        self.errored += entry.errored
        self.high = entry.number
        items.append(entry)
        if len(items) >= BLOCK:
            self.view = _sealed(items)

    @property
    def items(self) -> list[Entry]:
        return self.view[0]

    @property
    def growing(self) -> bool:
        return self.view[1] is None


def _sealed(items: list[Entry]) -> tuple[list[Entry], str, array, str, array]:
    """A block's view: its customers joined (NUL between) and where each starts, then the
    same of each order's fixed text (`Entry.fixed_text`)."""
    return (items, *_joined([e.customer for e in items]),
            *_joined([e.fixed_text for e in items]))


def _joined(texts: list[str]) -> tuple[str, array]:
    """`texts` joined with NUL between, and where each starts."""
    starts, at = array("L"), 0
    for text in texts:
        starts.append(at)
        at += len(text) + 1
    return _SEPARATOR.join(texts), starts


class OrderIndex:
    """The orders in memory, for searches that run without the scheduler lock."""

    def __init__(self, wall: Callable[[float], float]):
        self._wall = wall  # the core's clock to wall-clock seconds
        self._blocks: list[Block] = []
        self._by_id: dict[str, Entry] = {}

    # ------------------------------------------------------------------ writers (locked)

    def add(self, order: Order) -> None:
        """An order now in memory (submitted, recovered, brought back by a retry)."""
        old = self._by_id.get(order.id)
        if old is not None:
            if old.order is order:
                return
            self._forget(old)
        entry = Entry(order, self._wall(order.submitted_at))
        self._by_id[order.id] = entry
        blocks = self._blocks
        if blocks and entry.number < blocks[-1].high:
            self._insert(entry)  # an old order back in memory
        elif blocks and blocks[-1].growing:
            blocks[-1].append(entry)
        else:
            self._blocks = [*blocks, Block([entry])]

    def apply(self, fx: Effects) -> None:
        """Under the scheduler lock, with each stimulus's effects: orders submitted or whose
        status became or stopped being final, steps that got an error, orders forgotten."""
        for order in fx.orders.values():
            entry = self._by_id.get(order.id)
            if entry is None or entry.order is not order:
                self.add(order)
            else:
                if entry.workflow != order.workflow.name:  # moved by an operator (migrate.py)
                    entry.workflow = order.workflow.name
                    entry.block.workflows.add(entry.workflow)
                self._restatus(entry, status_class(order.reported_status))
        for task, _, finish in fx.moves:  # (identity: hashing an Enum member is slow)
            if finish is _RETRY_WAIT or finish is _FAILED:
                entry = self._by_id.get(task.order_id)
                if entry is not None and not entry.errored:
                    entry.errored = True
                    entry.block.errored += 1
        for order_id in fx.forgotten:
            entry = self._by_id.get(order_id)
            if entry is not None:
                self._forget(entry)

    def holds(self, order: Order) -> bool:
        """Under the lock: whether searches of the index cover this order (so a journal's
        older copy of it is not shown)."""
        entry = self._by_id.get(order.id)
        return entry is not None and entry.order is order

    def __len__(self) -> int:
        return len(self._by_id)

    def _restatus(self, entry: Entry, status: str) -> None:
        if status != entry.status:
            counts = entry.block.counts
            counts[status] = counts.get(status, 0) + 1
            counts[entry.status] -= 1
            entry.status = status

    def _forget(self, entry: Entry) -> None:
        """Drop an order; a block half forgotten is rebuilt, and merged into the block
        before it when both fit in one, so blocks stay few and full."""
        del self._by_id[entry.id]
        entry.alive = False
        block = entry.block
        block.counts[entry.status] -= 1
        block.errored -= entry.errored
        block.dead += 1
        items = block.items
        if block.dead * 2 < len(items):
            return
        kept = [e for e in items if e.alive]
        blocks = self._blocks
        at = blocks.index(block)
        newest = at == len(blocks) - 1
        before = blocks[at - 1] if at > 0 else None
        if before is not None and len(before.items) - before.dead + len(kept) <= BLOCK:
            # The earlier block takes these (readers that pass this block first and that
            # one next may see an order twice, never miss one).
            before.fill([e for e in before.items if e.alive] + kept, growing=newest)
            kept = []
        elif kept:
            block.fill(kept, growing=newest)
        if not kept:
            self._blocks = blocks[:at] + blocks[at + 1:]

    def _insert(self, entry: Entry) -> None:
        """An order numbered below the newest goes into the block its number falls in."""
        blocks = self._blocks
        at = max(0, bisect_right([b.low for b in blocks], entry.number) - 1)
        block = blocks[at]
        items = sorted([*(e for e in block.items if e.alive), entry], key=_number)
        block.fill(items, growing=at == len(blocks) - 1)

    # ------------------------------------------------------------------ readers (no lock)

    def scan(self, query: OrderQuery, before: int | None = None) -> Iterator[Entry]:
        """Orders matching `query` as they are now, numbered below `before`, newest first,
        each once. Runs without the scheduler lock, lazily: a caller stops when it has
        enough."""
        needle = query.customer.casefold() if query.customer else None
        # A SKU (or else a text) is looked for in the orders' fixed text; a text may also be
        # in an error, so the orders that ever had one are candidates too.
        part = query.sku or query.text
        fixed = part.casefold() if part else None
        in_errors = not query.sku and bool(query.text)
        status, workflow, error = query.status, query.workflow, query.error
        seen: set[str] = set()
        for block in reversed(self._blocks):
            if not _may_hold(block, query, before):
                continue
            items, text, starts, fixed_text, fixed_starts = block.view
            if text is None:  # the growing block: every order is a candidate
                candidates: Iterable[Entry] = reversed(items)
            elif needle is not None:
                candidates = _hits(items, text, starts, needle)
            elif fixed is not None:
                candidates = _hits(items, fixed_text, fixed_starts, fixed)
                if in_errors and block.errored:
                    candidates = sorted({*candidates, *(e for e in items if e.errored)},
                                        key=_newest_first)
            else:
                candidates = reversed(items)
            for entry in candidates:
                # The cheap tests first; then the query's own, on the order as it is now.
                if (not entry.alive or (before is not None and entry.number >= before)
                        or (status is not None and entry.order.reported_status != status)
                        or (workflow is not None and entry.workflow != workflow)
                        or (error is not None and not entry.errored)
                        or entry.id in seen or not entry.matches(query)):
                    continue
                seen.add(entry.id)
                yield entry


    def overdue(self, cutoff: float) -> tuple[int, float | None]:
        """Unfinished orders submitted before `cutoff` (wall clock), and the earliest
        submission among them (None when there are none): the overdue-orders alert. Blocks
        that hold no unfinished order, or none that old, are passed over whole."""
        count, earliest = 0, None
        for block in self._blocks:
            if block.earliest >= cutoff or not block.counts.get(UNFINISHED):
                continue
            for entry in block.items:
                if entry.alive and entry.status == UNFINISHED and entry.submitted < cutoff:
                    count += 1
                    if earliest is None or entry.submitted < earliest:
                        earliest = entry.submitted
        return count, earliest


def _number(entry: Entry) -> int:
    return entry.number


def _newest_first(entry: Entry) -> int:
    return -entry.number


def _may_hold(block: Block, query: OrderQuery, before: int | None) -> bool:
    """False when nothing in the block can match: it is passed over whole."""
    if before is not None and block.low >= before:
        return False
    if query.workflow is not None and query.workflow not in block.workflows:
        return False
    if query.status is not None and not block.counts.get(status_class(query.status)):
        return False
    if query.error is not None and not block.errored:
        return False
    since, until = query.time_bounds()
    if since is not None and block.latest < since:
        return False
    return until is None or block.earliest < until


def _hits(items: list[Entry], text: str, starts: array, needle: str) -> Iterable[Entry]:
    """The entries of a full block whose part of the joined `text` (their customer, or their
    fixed text) holds `needle`, newest first, found from its end. (A needle holding a
    separator may name an entry that does not hold it; the caller's own check drops it.)"""
    end = len(text)
    while True:
        at = text.rfind(needle, 0, end)
        if at < 0:
            return
        i = bisect_right(starts, at) - 1
        yield items[i]
        if i == 0:
            return
        end = starts[i] - 1  # what lies wholly before this entry's customer
