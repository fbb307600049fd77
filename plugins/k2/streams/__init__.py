"""Long-lived Bronze streams: their files on disk, lock, progress, health rules and supervisor."""
