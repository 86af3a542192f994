"""Models: the Models view (every model with its check, details, add / remove / reload), its
table model, the rows it shows, and the `inferdeck models` commands it runs in a child process.
"""
