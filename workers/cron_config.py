"""`rq cron workers/cron_config.py`: the periodic sweep (the Procfile's clock process)."""

from rq import cron

from workers.sweep import sweep

SWEEP_INTERVAL_S = 2
SWEEP_TTL_S = 10
"""A sweep not started within this time (seconds) is dropped: the next one will do."""

cron.register(sweep, queue_name="tally", interval=SWEEP_INTERVAL_S, ttl=SWEEP_TTL_S, result_ttl=0)
