"""lenbench's Hydra launcher plugin: a sweep's jobs that differ only in their seed train together."""
