"""gui/shared: see the README's Layout section."""
