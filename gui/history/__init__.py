"""gui/history: see the README's Layout section."""
