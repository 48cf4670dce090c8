"""Tests of the edge agent core: detection, lifecycle, engine, outbox, checkpoints."""
