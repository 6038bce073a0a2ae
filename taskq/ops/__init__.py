"""taskq.ops."""
