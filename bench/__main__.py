"""``python -m bench NAME [options]``: run the benchmark NAME (see ``bench.BENCHMARKS``)."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench import BENCHMARKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run one of this project's benchmarks. "
        "`python -m bench NAME --help` lists that benchmark's options.",
    )
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="the benchmark to run")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    args = parser.parse_args(argv)
    module = importlib.import_module(BENCHMARKS[args.name])
    return int(module.main(args.options))


if __name__ == "__main__":
    sys.exit(main())
