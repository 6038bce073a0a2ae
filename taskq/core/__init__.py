"""taskq.core."""
