"""Shared, I/O-free building blocks of pdm-edge: wire contracts, topics, settings loading, logging.

Importing this package never imports river or paho-mqtt, so it stays cheap for every service.
"""

__version__ = "0.3.0"

__all__ = ["__version__"]
