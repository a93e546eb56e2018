"""The worker pool: RQ job entry point, execution loop, provider transport."""
