"""The step handler API: what a handler receives, and how one attempt is run."""
