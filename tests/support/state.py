"""What a state directory holds."""

from __future__ import annotations

import os
from pathlib import Path

from tjob.blanks import PREFIX


def job_dirs(jobs_dir: Path) -> set[str]:
    """The names of the job directories in ``jobs_dir``: not the blanks made ahead of need."""
    return {n for n in os.listdir(jobs_dir) if not n.startswith(PREFIX)}
