"""Tests of backend.store (schema, queue, read/write helpers)."""
