"""The schema revision this code expects (kept light: the worker reads it)."""

SCHEMA_HEAD = "0009"
