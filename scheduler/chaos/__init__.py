"""Fault injection and its verdict: the `orderflow chaos` driver, the invariant checker that
reads a journal, a server-process harness, and the console demo."""
