"""Remote targets in the app: the Targets table and view, the edit dialog, the probers' host
and the status timeline.
"""
