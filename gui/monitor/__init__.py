"""gui/monitor: see the README's Layout section."""
