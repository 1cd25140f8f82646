"""The benchmarks behind `python bench.py <command>`: one module per command, each with add_parser() and run()."""
