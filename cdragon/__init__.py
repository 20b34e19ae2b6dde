"""Cloud Dragon: locks, versioned KV with watches, counters and sequences over HTTP+JSON."""
__version__ = "0.1.0"
