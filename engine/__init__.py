"""The Qt-free inference engine: contracts, models, the request path, ingest, stats and export."""
