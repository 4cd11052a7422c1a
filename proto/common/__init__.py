"""Rules both programs use (the agent and the aggregator cannot import each other).

- `backoff`: the delay before a retry (capped exponential, with jitter);
- `ewma`: load-average style moving averages over the 1/5/15-minute windows;
- `tokens`: where a bearer token comes from (a value or a file, one per line);
- `hardening`: what a process holding a token does to itself (not dumpable).

`backoff` and `ewma` are pure (no I/O, no clock: time and randomness are
passed in); `tokens` reads the file it is given; `hardening` calls prctl.
"""
