"""History: the Requests table (its Qt model and view) and one request's Trace waterfall."""
