"""taskq.tools."""
