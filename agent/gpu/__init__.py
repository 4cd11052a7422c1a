"""The node's GPUs through NVML: backend, collector, and the pure decoders (features, throttle reasons)."""
