"""Open Inference Protocol v2 (KServe v2, Triton, MLServer) over the loaded models.

`schema` holds the protocol's shapes and each model's tensors, `tensors` turns request tensors
into engine rows and results into output tensors, and `routes` mounts the `/v2` endpoints,
which call the service's dataplane (`engine.server.dataplane`). Every row of a batch goes
through the engine as a full request from client `oip`, so it is validated, traced and stored
exactly like a `/predict` request. Errors follow OIP: `{"error": "<message>"}` with a 4xx/5xx
status, not this service's envelope, on every `/v2` path (unknown ones included).
"""
