"""Benchmark actplug's activations: the same code and options as ``actplug bench`` (see benchmarks/README.md).

python benchmarks/bench_activations.py --acts smu,ash --repeats 5 --no-model
python benchmarks/bench_activations.py --device cuda --dtype bfloat16 --output results/h100-bf16
"""

from __future__ import annotations

import sys

from actplug.bench import main

if __name__ == "__main__":
    sys.exit(main())
