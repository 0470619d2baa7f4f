"""The ``fastwsgi`` command's launcher, outside the ``fastwsgi`` package on purpose.

The PyPI distribution named ``fastwsgi`` is another server (James Roberts' C server):
it installs a single module ``fastwsgi.py`` (and ``_fastwsgi``) plus its own
``fastwsgi`` command.  Where that module comes first on ``sys.path`` (a user site,
PYTHONPATH, the current directory), ``import fastwsgi`` finds it instead of this
distribution's package.  The launcher checks which one the import would find
*without* running it, and says so in one line instead of an ImportError traceback.
"""

import importlib.util
import os
import sys

DISTRIBUTION = "fastwsgi-server"


def shadowed():
    """None when ``import fastwsgi`` finds our package, else the path it finds."""
    try:
        spec = importlib.util.find_spec("fastwsgi")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return "nothing"
    locations = spec.submodule_search_locations
    # ours is a package and the only one carrying this marker (see fastwsgi/__init__)
    if locations and any(os.path.exists(os.path.join(d, "_distribution.txt"))
                         for d in locations):
        return None
    return spec.origin or "a namespace package"


def main():
    other = shadowed()
    if other is not None:
        sys.stderr.write(
            f"fastwsgi: 'import fastwsgi' finds {other}, not the {DISTRIBUTION} "
            f"package (the PyPI 'fastwsgi' is another server): remove it "
            f"(pip uninstall fastwsgi) or fix sys.path, then reinstall {DISTRIBUTION}\n")
        return 2
    from fastwsgi import cli
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
