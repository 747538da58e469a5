"""The Prune page's Ship section: the compacted model's size, measured latency, downloads."""
