"""The launcher's old name, kept for one thing: a supervisor started before the rename whose
launcher is gone execs ``from tjob.spawner import record_main`` (its argv holds that source)
to record its job's end. This alias keeps such jobs from being recorded lost after an
upgrade; nothing else may import it."""

from __future__ import annotations

from .launcher import record_main

__all__ = ["record_main"]
