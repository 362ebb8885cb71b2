"""Advisory locks (flock) that tell a running job's temporary files from a dead job's."""
from __future__ import annotations

import fcntl
from pathlib import Path


def is_locked(path: Path) -> bool:
    """Whether some process holds ``path``'s lock; True too where the lock cannot be tried (a
    file system without locks: nobody can tell, so keep the file). Raises FileNotFoundError when
    ``path`` is not there and other OSErrors when it cannot be opened: the caller decides."""
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        return False
