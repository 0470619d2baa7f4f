"""python -m bench [options]  |  python -m bench parser|idle|instructions [options]"""
import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
