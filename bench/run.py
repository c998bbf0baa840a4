"""Benchmarks on real models and data (not part of CI). Protocols: ../shared/BENCH-PROTOCOL.md.

    python bench/run.py                       # the core sections (`make bench`)
    python bench/run.py --section pruning     # named sections; `studies` = every non-core section
    python bench/run.py --list                # the sections and what each measures

Sections live in bench/sections/<topic>.py, their experiments in bench/configs/<topic>.yaml (recipes in
the format users write). Each result is a JSON file in bench/results/; bench/report.py renders them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench and hf_lite from this checkout

import torch  # noqa: E402

from bench.common import THREADS, save  # noqa: E402
from bench.sections import CORE, discover, studies  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    sections = discover()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", nargs="+", default=["all"], choices=["all", "studies", *sections])
    p.add_argument("--methods", nargs="*", help="row names, for the sections that take them (see --list)")
    p.add_argument("--list", action="store_true", help="list the sections and exit")
    a = p.parse_args(argv)
    if a.list:
        for name, s in sections.items():
            doc = " ".join((s.fn.__doc__ or "").split())
            print(f"{name:30} {'core ' if name in CORE else 'study'} {'[--methods] ' if s.names else ''}{doc[:110]}")
        return
    torch.set_num_threads(THREADS)
    names: list[str] = []
    for s in a.section:
        names += CORE if s == "all" else studies() if s == "studies" else [s]
    run = {"sections": {}, "loadavg_start": os.getloadavg()}
    start = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        sections[name](a.methods)
        run["sections"][name] = round(time.perf_counter() - t, 1)
        print(f"[bench] section {name}: {run['sections'][name]:.0f} s", flush=True)
    run["total_s"] = round(time.perf_counter() - start, 1)
    if a.section in (["all"], ["studies"]):  # the wall time of a whole `make bench` (or of all studies)
        save(f"bench_run_{a.section[0]}", run)


if __name__ == "__main__":
    main()
