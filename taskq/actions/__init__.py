"""taskq.actions."""
