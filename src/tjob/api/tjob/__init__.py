"""Generated code lives in v1/; this package only makes `tjob.api.tjob.v1` importable."""
