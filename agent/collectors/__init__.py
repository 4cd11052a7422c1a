"""One module per source of readings (gpu, host); the interfaces are in base.py."""
