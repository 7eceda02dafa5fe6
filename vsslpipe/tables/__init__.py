"""Paper tables as named, runnable objects: definitions in params.yaml, rows as DVC experiments."""
