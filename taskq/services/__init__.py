"""taskq.services."""
