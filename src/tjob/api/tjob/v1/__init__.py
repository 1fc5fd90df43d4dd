"""tjob API v1: generated from tjob.proto by `python -m tjob.api.gen` (never hand-edited)."""
