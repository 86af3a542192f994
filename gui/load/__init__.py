"""gui/load: see the README's Layout section."""
