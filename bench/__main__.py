"""python -m bench [options]  |  python -m bench parser [options]"""
import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
