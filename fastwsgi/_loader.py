"""Turn an APP_SPEC string into the WSGI callable it names.

Accepted forms (gunicorn's, plus factories with literal arguments)::

    module                      -> module.application
    module:app                  -> module.app
    module:obj.attr             -> module.obj.attr
    module:create_app()         -> module.create_app()
    module:create_app('prod', debug=False)

Factory arguments are parsed with ``ast`` and evaluated with ``ast.literal_eval``
only: a spec can name code, never run arbitrary expressions. (``ast`` is imported
for such specs only: a plain ``module:name`` is split without it.)

Contract: ``load_app`` returns a callable or raises ``AppLoadError`` whose message
is one line; when the app's own code fails (its import, its factory) the line ends
with the exception's last traceback line and where the app raised it, and
``AppLoadError.original`` keeps the exception: ``app_traceback(exc)`` formats its
traceback with the app's frames only (fastwsgi's and importlib's are left out
unless ``debug``), for the user to read before the one line.
"""

import importlib
import keyword
import os
import sys
import traceback

from fastwsgi.errors import AppLoadError

__all__ = ["AppLoadError", "load_app", "parse_app_spec", "app_traceback",
           "load_error_text"]

DEFAULT_ATTRIBUTE = "application"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _spec_error(spec, why):
    return AppLoadError(
        f"invalid app spec {spec!r}: {why} "
        "(expected MODULE, MODULE:NAME, MODULE:NAME.attr or MODULE:FACTORY(ARGS))"
    )


def _attribute_path(node, spec):
    """``a.b.c`` as an ast node -> ["a", "b", "c"]."""
    import ast
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise _spec_error(spec, "the part after ':' must be a name or a call")
    parts.append(node.id)
    return parts[::-1]


def parse_app_spec(spec):
    """Split a spec into ``(module, [attr, ...], call)``.

    ``call`` is None for a plain reference, else ``(args, kwargs)`` of literals.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise _spec_error(spec, "it is empty")
    module, sep, expr = spec.strip().partition(":")
    module, expr = module.strip(), expr.strip()
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise _spec_error(spec, f"{module!r} is not a module name")
    if not sep:
        return module, [DEFAULT_ATTRIBUTE], None
    if not expr:
        raise _spec_error(spec, "nothing after ':'")
    names = expr.split(".")
    if expr.isascii() and all(n.isidentifier() and not keyword.iskeyword(n) for n in names):
        return module, names, None  # a dotted name: what ast would make of it
    import ast
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise _spec_error(spec, f"{expr!r} is not valid Python") from None
    if not isinstance(node, ast.Call):
        return module, _attribute_path(node, spec), None
    path = _attribute_path(node.func, spec)
    try:
        args = [ast.literal_eval(arg) for arg in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError("**kwargs")
            kwargs[kw.arg] = ast.literal_eval(kw.value)
    except ValueError:
        raise _spec_error(spec, "factory arguments must be literals "
                          "(strings, numbers, True/False/None, tuples, lists, dicts)") from None
    return module, path, (args, kwargs)


def _is_ours(filename):
    """importlib's and fastwsgi's frames: noise in the traceback of an app's error."""
    return "importlib" in filename or os.path.abspath(filename).startswith(_PACKAGE_DIR)


def _last_line(exc):
    """``Type: message (file.py, line N)`` for the innermost frame of the app's code."""
    summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{summary} ({os.path.basename(exc.filename)}, line {exc.lineno})"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not _is_ours(frame.filename):
            return f"{summary} ({os.path.basename(frame.filename)}, line {frame.lineno})"
    return summary


def _without_our_frames(te, seen):
    """Drop importlib's and fastwsgi's frames from a TracebackException and the
    exceptions chained to it (``seen``: a chain may loop)."""
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [frame for frame in te.stack if not _is_ours(frame.filename)])
    _without_our_frames(te.__cause__, seen)
    _without_our_frames(te.__context__, seen)


def app_traceback(error, debug=False):
    """The traceback of the app's exception behind ``error`` (an AppLoadError), as
    text ending with a newline, or "" when the app's code raised nothing.

    Full paths, the app's frames only: fastwsgi's and importlib's are shown with
    ``debug`` (``--log-level debug``) alone.
    """
    original = getattr(error, "original", None)
    if original is None:
        return ""
    te = traceback.TracebackException.from_exception(original)
    if not debug:
        _without_our_frames(te, set())
    return "".join(te.format())


def load_error_text(error, debug=False):
    """``error`` for a log line: its one line, after the app's traceback (on lines
    of their own) when the app's code raised."""
    text = app_traceback(error, debug)
    return f"\n{text}{error}" if text else str(error)


def _is_missing(module, missing):
    """True if ``missing`` (from ModuleNotFoundError.name) is ``module`` or a parent."""
    return missing is not None and (module == missing or module.startswith(missing + "."))


def _import(module):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if _is_missing(module, exc.name):
            raise AppLoadError(
                f"module {module!r} not found (searched the current directory "
                f"{os.getcwd()!r} and sys.path)"
            ) from None
        raise AppLoadError(f"cannot import {module!r}: {_last_line(exc)}", exc) from None
    except (Exception, SystemExit) as exc:
        raise AppLoadError(f"cannot import {module!r}: {_last_line(exc)}", exc) from None


def _put_cwd_first_on_path():
    cwd = os.getcwd()
    for entry in ("", cwd):
        while entry in sys.path:
            sys.path.remove(entry)
    sys.path.insert(0, cwd)


def load_app(spec, chdir=None):
    """Import and return the WSGI application named by ``spec``.

    With ``chdir``, change to that directory first. The current directory goes
    first on sys.path (as gunicorn does), so ``fastwsgi app:app`` finds ./app.py
    even from an installed console script; PYTHONPATH entries stay on sys.path.
    """
    module_name, path, call = parse_app_spec(spec)
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppLoadError(f"cannot change to directory {chdir!r}: "
                               f"{(exc.strerror or str(exc)).lower()}") from None
    _put_cwd_first_on_path()
    obj = _import(module_name)

    where = module_name
    for i, attr in enumerate(path):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            hint = ""
            if i == 0 and path == [DEFAULT_ATTRIBUTE] and hasattr(obj, "app"):
                hint = f" (did you mean '{module_name}:app'?)"
            kind = "module" if i == 0 else "object"
            raise AppLoadError(f"{kind} {where!r} has no attribute {attr!r}{hint}") from None
        where = f"{module_name}:{'.'.join(path[: i + 1])}"

    if call is not None:
        args, kwargs = call
        if not callable(obj):
            raise AppLoadError(f"factory {where!r} is not callable "
                               f"(it is {type(obj).__name__})")
        shown = spec.strip().partition(":")[2].strip()
        try:
            obj = obj(*args, **kwargs)
        except (Exception, SystemExit) as exc:
            raise AppLoadError(f"factory {shown!r} raised {_last_line(exc)}", exc) from None
        if not callable(obj):
            raise AppLoadError(f"factory {shown!r} returned {type(obj).__name__}, "
                               "which is not a WSGI callable")
        return obj

    if not callable(obj):
        raise AppLoadError(f"{where!r} is not callable (it is {type(obj).__name__}); "
                           "a WSGI application must be callable")
    return obj
