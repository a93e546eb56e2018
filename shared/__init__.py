"""What producers and workers both import: schemas, registry, adapters, store, limiter, scrubber."""
