"""One cached virtualenv per server under bench/.venvs/<name>.

Contract: ``ensure(name, packages, python, repo=None)`` returns an ``Env``
whose packages are installed, creating or refreshing the venv only when its
stamp (interpreter, package list, and for our server a hash of the repo's
sources) changed; it raises ``EnvError`` with the tail of pip's log if an
install fails. Separate venvs keep same-named distributions apart: the PyPI
``fastwsgi`` (a C server) must never land where ours is installed.

Our package is installed from a copy of the repo made in a temp dir, so the
build's by-products (build/, *.egg-info, generated .c files) never appear in
the working tree other engineers are editing. When only the repo hash
changed, just our package is reinstalled.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"
STAMP = ".bench-stamp.json"
# What makes up the installed package; anything else in the repo (tests,
# bench, CI) cannot change it.
SOURCE_GLOBS = ["setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "fastwsgi_server.py",
                "fastwsgi/**/*.py", "fastwsgi/**/*.pyx", "fastwsgi/**/*.pxd",
                "fastwsgi/**/*.pxi", "fastwsgi/**/*.pyi", "fastwsgi/**/*.h",
                "fastwsgi/**/*.c"]
_IGNORE = shutil.ignore_patterns(".git", "bench", "build", "dist", "*.egg-info",
                                 "__pycache__", ".venv*", "*.so", "tests",
                                 ".pytest_cache", ".hypothesis")


def copy_ignore(directory, names):
    """Build output stays behind, including .c files that Cython generates
    from a .pyx beside them (a stale one could be compiled instead)."""
    skip = set(_IGNORE(directory, names))
    present = set(names)
    skip |= {n for n in names if n.endswith(".c") and n[:-2] + ".pyx" in present}
    return skip


class EnvError(Exception):
    pass


@dataclass
class Env:
    name: str
    path: Path

    @property
    def bin(self):
        return self.path / "bin"

    @property
    def python(self):
        return self.bin / "python"

    def version(self, dist):
        out = subprocess.run(
            [str(self.python), "-c",
             "import sys, importlib.metadata as m; print(m.version(sys.argv[1]))", dist],
            capture_output=True, text=True)
        return out.stdout.strip() or None


def repo_hash(repo):
    repo = Path(repo)
    h = hashlib.sha256()
    files = sorted({p for g in SOURCE_GLOBS for p in repo.glob(g)
                    if p.is_file() and "__pycache__" not in p.parts
                    # generated from .pyx by the build; not a source
                    and not (p.suffix == ".c" and p.with_suffix(".pyx").exists())})
    for p in files:
        h.update(str(p.relative_to(repo)).encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def _pip(env, args, log):
    cmd = [str(env.python), "-m", "pip", "install", "--disable-pip-version-check",
           "--no-input"] + args
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = Path(log).read_text().splitlines()[-12:]
        raise EnvError(f"pip install {' '.join(args)} failed; see {log}\n  "
                       + "\n  ".join(tail))


def install_repo(env, repo, log):
    with tempfile.TemporaryDirectory(prefix="fastwsgi-src-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(repo, src, ignore=copy_ignore)
        _pip(env, ["--force-reinstall", "--no-deps", str(src)], log)


def _read_stamp(path):
    try:
        return json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return None


def ensure(name, packages, python=None, repo=None, log=print):
    """Create or refresh venv ``name``; install ``packages`` and maybe ``repo``."""
    python = str(Path(python or sys.executable))
    path = VENVS / name
    env = Env(name, path)
    logfile = VENVS / f"{name}.log"
    base = {"python": python, "packages": sorted(packages)}
    want_repo = repo_hash(repo) if repo else None
    stamp = _read_stamp(path)
    if stamp and stamp.get("base") == base and env.python.exists():
        if stamp.get("repo") == want_repo:
            return env
        log(f"{name}: sources changed, reinstalling from {repo}")
    else:
        log(f"{name}: creating venv ({', '.join(packages) or 'no packages'})")
        if path.exists():
            shutil.rmtree(path)
        VENVS.mkdir(parents=True, exist_ok=True)
        logfile.write_text("")
        rc = subprocess.run([python, "-m", "venv", str(path)],
                            capture_output=True, text=True)
        if rc.returncode != 0:
            raise EnvError(f"venv creation failed: {rc.stderr.strip()[-300:]}")
        if packages:
            _pip(env, list(packages), logfile)
        # Stamp the base now: a failing repo build must not redo the peers.
        (path / STAMP).write_text(json.dumps({"base": base, "repo": None}))
    if repo:
        install_repo(env, repo, logfile)
        (path / STAMP).write_text(json.dumps({"base": base, "repo": want_repo}))
    return env
