"""orderflow examples."""
