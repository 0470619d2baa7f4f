"""The distribution as a user installs it: name, metadata, wheel and sdist contents,
typing, stripped extensions, and the one-line answer when the other PyPI
``fastwsgi`` (James Roberts' C server) shadows ours.

Building a wheel compiles every extension (minutes), so the wheel and sdist are
checked through their configuration: pyproject.toml for the wheel's package data,
MANIFEST.in evaluated by setuptools' own FileList for the sdist.  The extensions
the suite imports were built by that same configuration, so their ELF symbol
tables are checked directly.
"""

import ast
import os
import re
import struct
import subprocess
import sys
import tomllib

import pytest

import fastwsgi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
PACKAGE_DIR = os.path.dirname(os.path.abspath(fastwsgi.__file__))


def pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def extension_modules():
    """setup.py's MODULES list, read without running setup()."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MODULES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no MODULES list")


# ------------------------------------------------------------------------- metadata


def test_distribution_name_is_ours_and_the_import_name_stays():
    project = pyproject()["project"]
    # the PyPI 'fastwsgi' is another server; ours must never resolve to it
    assert project["name"] == "fastwsgi-server"
    assert project["scripts"] == {"fastwsgi": "fastwsgi_server:main"}
    assert pyproject()["tool"]["setuptools"]["packages"] == ["fastwsgi"]


def test_version_is_written_once():
    config = pyproject()
    assert "version" not in config["project"]
    assert config["project"]["dynamic"] == ["version"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastwsgi.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", fastwsgi.__version__)
    literal = f'"{fastwsgi.__version__}"'
    copies = [name for name in sorted(os.listdir(os.path.join(ROOT, "fastwsgi")))
              if name.endswith((".py", ".pyx", ".pyi"))
              and literal in open(os.path.join(ROOT, "fastwsgi", name)).read()]
    assert copies == ["__init__.py"]


def test_license_is_an_spdx_expression_with_its_file():
    config = pyproject()
    project = config["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert "MIT License" in open(os.path.join(ROOT, "LICENSE")).read()
    # PEP 639 metadata needs setuptools 77
    assert "setuptools>=77" in config["build-system"]["requires"]
    assert not any(c.startswith("License ::") for c in project["classifiers"])


def test_supported_pythons_and_status():
    project = pyproject()["project"]
    assert project["requires-python"] == ">=3.11"
    versions = sorted(c.rsplit(" ", 1)[1] for c in project["classifiers"]
                      if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert versions == ["3.11", "3.12", "3.13", "3.14", "3.15"]
    assert any(c.startswith("Development Status :: ") for c in project["classifiers"])
    assert sys.version_info >= (3, 11)
    # release wheels are built for exactly these (and no free-threaded build)
    build = pyproject()["tool"]["cibuildwheel"]["build"].split()
    assert build == ["cp%s-*" % v.replace(".", "") for v in versions]


def test_wheel_carries_no_sources():
    """The wheel is for running: .pyi and py.typed, never .pyx/.pxd/.c."""
    setuptools_cfg = pyproject()["tool"]["setuptools"]
    # include-package-data would put everything MANIFEST.in lists into the wheel
    assert setuptools_cfg["include-package-data"] is False
    patterns = setuptools_cfg["package-data"]["fastwsgi"]
    assert sorted(patterns) == ["*.pyi", "_distribution.txt", "py.typed"]


# --------------------------------------------------------------------------- typing


def test_every_extension_has_a_stub_and_the_package_is_typed():
    assert os.path.exists(os.path.join(ROOT, "fastwsgi", "py.typed"))
    missing = [m for m in extension_modules()
               if not os.path.exists(os.path.join(ROOT, "fastwsgi", m + ".pyi"))]
    assert missing == []


def stub_names(path):
    """{top-level name: [method names]} that a stub declares."""
    names = {}
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = [n.name for n in node.body
                                if isinstance(n, ast.FunctionDef) and not n.name.startswith("__")]
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = []
        elif isinstance(node, ast.AnnAssign):
            names[node.target.id] = []
    return names


@pytest.mark.parametrize("module", extension_modules())
def test_stub_matches_the_compiled_module(module):
    """A stub that names something the extension lacks would type-check code that
    fails at run time."""
    compiled = __import__(f"fastwsgi.{module}", fromlist=["_"])
    for name, methods in stub_names(os.path.join(ROOT, "fastwsgi", module + ".pyi")).items():
        assert hasattr(compiled, name), f"{module}.pyi declares {name}, the module lacks it"
        for method in methods:
            assert hasattr(getattr(compiled, name), method), f"{module}.{name}.{method}"


def run_mypy(tmp_path, *files):
    # A PYTHONPATH entry is an installed package to mypy: without py.typed it is
    # skipped with "missing library stubs or py.typed marker".
    env = dict(os.environ, PYTHONPATH=os.path.dirname(PACKAGE_DIR),
               MYPY_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                           "--python-version", "%d.%d" % sys.version_info[:2], *files],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_mypy_accepts_an_app_written_against_the_public_api(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the [test] extras: pip install '.[test]'")
    result = run_mypy(tmp_path, os.path.join(APPS, "typed_app.py"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_mypy_reads_the_stubs(tmp_path):
    """Misuse of a compiled module is caught, so the stubs are really in use."""
    pytest.importorskip("mypy", reason="mypy is in the [test] extras: pip install '.[test]'")
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from fastwsgi._parser import Limits\n"
        "from fastwsgi._loop import Loop\n"
        "from fastwsgi._writer import frame_chunk\n"
        "Limits(max_body='big')\n"
        "Loop.no_such_method\n"
        "frame_chunk('text')\n"
        "version: int = __import__('fastwsgi').__version__\n")
    result = run_mypy(tmp_path, str(wrong))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "wrong.py:4: error" in result.stdout
    assert "wrong.py:5: error" in result.stdout
    assert "wrong.py:6: error" in result.stdout
    assert "py.typed" not in result.stdout


# ----------------------------------------------------------------------- extensions


def elf_section_names(path):
    """Section names of a 64-bit little-endian ELF file (what `readelf -S` lists)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, path
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strtab_off, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    names = []
    for i in range(shnum):
        name_off, = struct.unpack_from("<I", data, shoff + i * shentsize)
        start = strtab_off + name_off
        names.append(data[start:data.index(b"\0", start)].decode())
    return names


@pytest.mark.parametrize("module", extension_modules())
def test_release_extensions_are_stripped(module):
    if os.environ.get("FASTWSGI_DEBUG") == "1":
        pytest.skip("FASTWSGI_DEBUG=1 builds keep their symbols")
    compiled = __import__(f"fastwsgi.{module}", fromlist=["_"])
    sections = elf_section_names(compiled.__file__)
    assert ".text" in sections
    # symbols and DWARF are most of an unstripped .so
    assert ".symtab" not in sections and ".debug_info" not in sections, compiled.__file__


# ---------------------------------------------------------------------------- sdist


def sdist_files():
    """What MANIFEST.in adds to the sdist (setuptools adds the package's .py files,
    setup.py and pyproject.toml itself), evaluated by setuptools' own FileList over
    the tracked files."""
    from setuptools.command.egg_info import FileList

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                             text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout (an unpacked sdist): nothing to compare with")
    files = FileList()
    files.allfiles = tracked.stdout.split()
    for line in open(os.path.join(ROOT, "MANIFEST.in")):
        line = line.split("#", 1)[0].strip()
        if line:
            files.process_template_line(line)
    return set(files.files)


def test_sdist_runs_the_test_suite_and_carries_the_docs():
    files = sdist_files()
    tracked_tests = subprocess.run(["git", "ls-files", "tests", "fuzz/regressions"], cwd=ROOT,
                                   capture_output=True, text=True).stdout.split()
    assert "tests/conftest.py" in files
    assert sorted(set(tracked_tests) - files) == []
    for name in ("LICENSE", "README.md", "SECURITY.md", "docs/settings.md",
                 "fastwsgi/py.typed", "fastwsgi/_distribution.txt"):
        assert name in files, name
    sources = subprocess.run(["git", "ls-files", "fastwsgi/*.pyx", "fastwsgi/*.pxd",
                              "fastwsgi/*.pxi"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert {f"fastwsgi/{m}.pyx" for m in extension_modules()} <= set(sources)
    assert sorted(set(sources) - files) == []
    # every document the README links to
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", open(os.path.join(ROOT, "README.md")).read()):
        assert link in files, f"README links to {link}, the sdist lacks it"
    assert not any(f.endswith((".c", ".so", ".pyc")) for f in files)


# ------------------------------------------------------------------------ shadowing


def launcher_env(tmp_path, shadow):
    paths = [APPS, os.environ.get("PYTHONPATH", "")]
    if shadow:
        # what `pip install fastwsgi` (the other server) installs: a single module
        (tmp_path / "fastwsgi.py").write_text("import _fastwsgi\n")
        paths.insert(0, str(tmp_path))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


def test_launcher_says_in_one_line_that_another_fastwsgi_shadows_ours(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastwsgi_server", "basic:app"],
                            env=launcher_env(tmp_path, shadow=True), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(tmp_path / "fastwsgi.py") in lines[0]
    assert "another server" in lines[0] and "pip uninstall fastwsgi" in lines[0]


def test_launcher_runs_our_cli_when_nothing_shadows(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastwsgi_server", "--version"],
                            env=launcher_env(tmp_path, shadow=False), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert fastwsgi.__version__ in result.stdout + result.stderr


def test_the_other_servers_command_over_our_package_says_so(tmp_path):
    """`pip install fastwsgi` after ours overwrites bin/fastwsgi with a script that
    runs `from fastwsgi import run_from_cli` -- which then imports our package."""
    script = "import sys\nfrom fastwsgi import run_from_cli\nsys.exit(run_from_cli())\n"
    result = subprocess.run([sys.executable, "-c", script],
                            env=launcher_env(tmp_path, shadow=False), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "another server" in lines[0] and "pip uninstall fastwsgi" in lines[0]
