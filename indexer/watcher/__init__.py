"""The lean `--watch` owner: a parent process without torch (`supervisor`, with the API port's `proxy`) and a worker
process (`worker`) that holds the stores and the model while there is work. Above `indexer.owner` (whose service the
worker runs) and below the command lines (`indexer.run` starts the supervisor)."""
