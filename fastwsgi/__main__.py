"""``python -m fastwsgi``: the same as the ``fastwsgi`` command."""

import sys

from fastwsgi import cli

sys.exit(cli.main())
