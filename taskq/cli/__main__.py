from taskq.cli import run

run()
