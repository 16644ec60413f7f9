"""A shop's own app, its gateway stand-in, and a runner that starts them all on loopback."""
