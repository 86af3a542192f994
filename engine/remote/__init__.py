"""Remote targets: what an endpoint is, how to probe it, load it and record what it answered."""
