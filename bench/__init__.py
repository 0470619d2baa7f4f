"""Side-by-side benchmarks of fastwsgi against other WSGI servers.

Run ``python -m bench --help`` from the repository root; see bench/README.md.
"""
