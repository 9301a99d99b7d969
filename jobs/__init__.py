"""Background and DBA work: the scheduler (scheduler.py, periodic.py) and what it runs (the
compactor and rebuild, retention, compression, alert evaluation, notification delivery, health
checks, tracking), and `python -m jobs`, the command line for DBAs (cli.py)."""
