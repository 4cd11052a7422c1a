"""Reading the whole node at an interval: collector interfaces, the node reader and the daemon."""
