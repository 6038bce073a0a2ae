"""Integrations with frameworks (each needs its extra: ``pip install taskq[django]``).

Nothing in taskq imports these modules; they import taskq.
"""
