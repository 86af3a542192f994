"""gui/runs: see the README's Layout section."""
