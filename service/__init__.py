"""pixscape service: serves published snapshots over HTTP. Reads, never writes."""
