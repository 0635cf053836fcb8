"""Write files so that readers see the old version or the new one, never half of either."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write to; on success it replaces `path` in one rename.

    On error (or a crash) the temporary file is removed or left under a `.tmp-` name that no reader looks for.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per call, not only per process: two threads of one process may write the same file at once.
    temporary = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
