"""The built-in demo: its steps, the chaos knobs that make them fail, and plausible orders."""
