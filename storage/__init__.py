"""SQLite persistence for InferDeck: schema, migrations, the group-commit writer and queries.

This package knows nothing of the engine or the GUI; it stores rows and answers queries.
"""

from storage.database import Database, open_database
from storage.writer import GroupCommitWriter

__all__ = ["Database", "GroupCommitWriter", "open_database"]
