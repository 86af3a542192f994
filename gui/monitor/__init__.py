"""The Monitor: the local engine's live plots (latency, throughput, queue, stages, histogram)."""
