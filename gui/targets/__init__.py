"""gui/targets: see the README's Layout section."""
