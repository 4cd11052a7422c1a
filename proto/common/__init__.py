"""Pure rules both programs use (the agent and the aggregator cannot import each other).

- `backoff`: the delay before a retry (capped exponential, with jitter);
- `ewma`: load-average style moving averages over the 1/5/15-minute windows.

No I/O, no clock: time and randomness are passed in.
"""
