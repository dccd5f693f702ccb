import logging
import os
import sys

from indexer.cli import main

rc = main()
# Every store is closed and the lock released by now. Skip the interpreter's teardown: unloading torch and its CUDA
# libraries took 2-6 s here, which made an idle watcher miss the 2 s a service manager gives it after SIGTERM.
sys.stdout.flush()
sys.stderr.flush()
logging.shutdown()
os._exit(rc if isinstance(rc, int) else 1)
