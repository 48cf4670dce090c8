"""Desk adapters: one module per service desk, all behind the DeskAdapter protocol of base.py."""
