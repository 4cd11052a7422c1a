"""The host through psutil and /proc, /sys: collector and pure parsers."""
