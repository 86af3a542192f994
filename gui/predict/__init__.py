"""gui/predict: see the README's Layout section."""
