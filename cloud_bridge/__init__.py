"""cloud_bridge package."""
