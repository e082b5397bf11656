"""The first-call benchmark (same code as ``python -m actplug.bench.first_call``): see actplug/bench/first_call.py."""

import sys

from actplug.bench.first_call import main

if __name__ == "__main__":
    sys.exit(main())
