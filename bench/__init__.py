"""hf_lite benchmarks: `python bench/run.py --list`."""
