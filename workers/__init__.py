"""RQ jobs that drain the pipeline: tally votes, send replies, sweep for stragglers."""
