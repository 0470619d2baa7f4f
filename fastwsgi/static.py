"""Static files served by the server itself (``--static /static=./static``).

``StaticFiles(app, {"/static": "./static"})`` is a WSGI middleware: a request whose
PATH_INFO is under a prefix is answered from that directory, any other goes to
``app``.  Bodies go out through ``environ["wsgi.file_wrapper"]``, which fastwsgi's
compiled connection sends with sendfile(2); under another server the wrapper (or
a plain block iterator) is used as it is.

What a request gets (RFC 9110):

* GET and HEAD only; anything else under a prefix is 405 with ``Allow``.
* 200 with Content-Type (``mimetypes``; text/* in UTF-8), Content-Length,
  ``ETag: "<mtime_ns>-<size>"`` (hex), Last-Modified, ``Accept-Ranges: bytes``.
* 304 when If-None-Match matches the ETag (weak comparison, §13.1.2), or, without
  If-None-Match, when the file is not newer than If-Modified-Since (§13.1.3).
* Range (GET only, §14.2): one ``bytes=`` range -> 206 with Content-Range; an
  unsatisfiable one -> 416 with ``Content-Range: bytes */size``.  Several ranges
  -> 200 with the whole file (a server may ignore Range; multipart/byteranges is
  not implemented).  A malformed Range, or an If-Range that does not match
  (strong ETag or the exact Last-Modified date), is ignored: 200.
* 404 for anything that is not a regular file inside the directory, and for
  every way out of it: a ".." segment, an encoded "/" or "\\" (%2F, %5C) or
  NUL in the target, a backslash, or a symlink whose target resolves outside
  the directory (symlinks that stay inside are followed).  Directories are not
  listed and have no index file.
* 404 for dotfiles and anything under a dot-directory (".env", ".git/config",
  also spelled "%2eenv": PATH_INFO is decoded) unless ``dotfiles=True``
  (``--static-dotfiles``): a project directory served by mistake must not hand
  out its secrets.
* Only regular files: a FIFO, device or socket is 404.  The file is opened
  with O_NONBLOCK and fstat()ed before anything is read, so a FIFO with no
  writer cannot block the event loop (a plain open() of one would).
* Where a file is, is asked of the kernel after it is opened: the path of the
  open descriptor (/proc/self/fd/N, every symlink resolved) must lie inside
  the directory.  No window between a check and the open, and one readlink
  instead of an lstat per path component (os.path.realpath, where /proc is
  not mounted).
* Range numbers are bounded: a first-byte-pos of more than 18 digits is past
  any file (416), a larger last-byte-pos or suffix-length is clamped to the
  file (RFC 9110 §14.1.2), never an int() of thousands of digits.
* ``cache_control`` (``--static-cache-control``), when set, is sent as
  Cache-Control with every 200/206/304 (e.g. "public, max-age=31536000,
  immutable" for Django's hashed ``collectstatic`` names).
"""

import email.utils
import mimetypes
import os
import re
import stat

__all__ = ["StaticFiles"]

_CHUNK = 65536
# %2F / %5C / %00 in the raw target: PATH_INFO has them decoded, where they look
# like a separator (or end a C string); the original request meant a file name.
_ENCODED_SEPARATOR = re.compile(r"%(?:2[fF]|5[cC]|00)")
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
# 18 digits are < 2**63 and far past any file; longer numbers are not converted
_MAX_DIGITS = 18
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


class _File:
    """An open file descriptor as wsgi.file_wrapper wants it: fileno() and tell()
    (fastwsgi sends it with sendfile from there), read() (any other server
    iterates it), close(); narrowed to a byte range by slice().  Lighter than a
    buffered file object, which a sendfile never uses."""

    __slots__ = ("fd", "left")

    def __init__(self, fd):
        self.fd = fd
        self.left = None            # bytes left to read; None: to the end of the file

    def slice(self, start, length):
        """From here on: ``length`` bytes from ``start``."""
        if start:
            os.lseek(self.fd, start, os.SEEK_SET)
        self.left = length

    def fileno(self):
        if self.fd < 0:
            raise ValueError("I/O operation on closed file")
        return self.fd

    def tell(self):
        return os.lseek(self.fileno(), 0, os.SEEK_CUR)

    def read(self, size=-1):
        if size is None or size < 0:
            size = _CHUNK if self.left is None else self.left
        if self.left is not None:
            size = min(size, self.left)
        data = os.read(self.fileno(), size) if size else b""
        if self.left is not None:
            self.left -= len(data)
        return data

    def close(self):
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self):
        self.close()


def _blocks(filelike, blksize=_CHUNK):
    """The PEP 3333 fallback when the server offers no wsgi.file_wrapper."""
    try:
        while True:
            data = filelike.read(blksize)
            if not data:
                return
            yield data
    finally:
        filelike.close()


def _plain(start_response, status, extra=(), body=b""):
    headers = [("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Length", str(len(body)))]
    headers.extend(extra)
    start_response(status, headers)
    return [body]


def _etag_matches(header, etag):
    """If-None-Match: weak comparison (RFC 9110 §8.8.3.2) against a list or "*"."""
    if header.strip() == "*":
        return True
    ours = etag[2:] if etag.startswith("W/") else etag
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == ours:
            return True
    return False


def _http_date(value):
    """An HTTP-date -> POSIX seconds, or None (RFC 9110 §5.6.7: ignore invalid dates)."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def _parse_range(header, size):
    """RFC 9110 §14.1.2 -> (start, end) inclusive, "unsatisfiable", or None (ignore)."""
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None                      # other units, malformed, or several ranges
    m = _RANGE.match(spec)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    # leading zeros do not count toward the bound ("000...07" is 7)
    first, last = (g.lstrip("0") or g[:1] for g in m.groups())
    if len(first) > _MAX_DIGITS:
        return "unsatisfiable"           # starts past the end of any file
    if len(last) > _MAX_DIGITS:
        last = str(1 << 62)              # "to the end" (clamped below), or a whole-file suffix
    if first:
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None                  # "invalid", not unsatisfiable (§14.1.1)
        if start >= size:
            return "unsatisfiable"
        return start, min(end, size - 1)
    suffix = int(last)                   # "-N": the last N bytes
    if suffix == 0 or size == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size - 1


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_PROC_FD = "/proc/self/fd/"
_HAVE_PROC = os.path.isdir(_PROC_FD)
_CACHE_MAX = 1024              # entries of each small cache below


def _open_inside(path, root):
    """(fd, its stat) of ``path`` if it is a regular file inside ``root``, else None.

    O_NONBLOCK: open() of a FIFO without a writer would block the server until
    one appears; with it the open returns at once and fstat() says what it
    is.  (For a regular file O_NONBLOCK changes nothing.)  O_NOCTTY: a tty
    device never becomes our controlling terminal.  Inside: where the opened
    descriptor really is (every symlink resolved by the kernel) starts with the
    root's path."""
    if not _HAVE_PROC and not _inside(os.path.realpath(path), root):
        return None
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and (
                not _HAVE_PROC or _inside(os.readlink(_PROC_FD + str(fd)), root)):
            return fd, st
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _inside(real, root):
    return real.startswith(root) and (len(real) == len(root) or real[len(root)] == os.sep
                                      or root == os.sep)


class StaticFiles:
    """WSGI middleware serving ``{url_prefix: directory}`` in front of ``app``."""

    def __init__(self, app, directories, dotfiles=False, cache_control=None):
        self.app = app
        self.dotfiles = dotfiles
        self.cache_control = cache_control
        mounts = []
        self._dates = {}           # mtime -> Last-Modified
        self._types = {}           # last suffixes of a name -> Content-Type
        for prefix, directory in dict(directories).items():
            root = os.path.realpath(directory)
            if not os.path.isdir(root):
                raise ValueError(f"static directory {directory!r} does not exist")
            mounts.append(("/" + prefix.strip("/") if prefix.strip("/") else "", root))
        # the longest prefix wins: /static/img before /static
        mounts.sort(key=lambda m: len(m[0]), reverse=True)
        self.mounts = mounts

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        for prefix, root in self.mounts:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return self.serve(environ, start_response, root, path[len(prefix):])
        return self.app(environ, start_response)

    # -- one file -----------------------------------------------------------------

    def resolve(self, environ, root, relative):
        """The path under root this request names, or None if it may name none
        (whether it is a regular file inside root is _open_inside's question)."""
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        if "%" in raw and _ENCODED_SEPARATOR.search(raw.split("?", 1)[0]):
            return None
        if "\x00" in relative or "\\" in relative:
            return None
        parts = []
        for segment in relative.split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                return None              # rejected, not normalized: nothing climbs
            if segment.startswith(".") and not self.dotfiles:
                return None              # .env, .git/...: hidden unless enabled
            parts.append(segment)
        if not parts:
            return None                  # the directory itself: no listing
        if not relative.isascii():
            try:
                # PEP 3333: PATH_INFO is the request's bytes as latin-1; file names
                # are the filesystem encoding's (utf-8, surrogateescape for the rest)
                parts = [os.fsdecode(p.encode("latin-1")) for p in parts]
            except UnicodeEncodeError:
                return None
        return os.path.join(root, *parts)

    def serve(self, environ, start_response, root, relative):
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", [("Allow", "GET, HEAD")],
                          b"Method Not Allowed\n")
        path = self.resolve(environ, root, relative)
        opened = _open_inside(path, root) if path is not None else None
        if opened is None:
            return _plain(start_response, "404 Not Found", body=b"Not Found\n")
        f = _File(opened[0])
        try:
            return self._respond(environ, start_response, f, path, opened[1], method)
        except BaseException:
            f.close()
            raise

    def _last_modified(self, mtime):
        date = self._dates.get(mtime)
        if date is None:
            if len(self._dates) >= _CACHE_MAX:
                self._dates.clear()
            date = self._dates[mtime] = email.utils.formatdate(mtime, usegmt=True)
        return date

    def _content_type(self, path):
        # mimetypes looks at the last suffix, and the one before it when the last
        # is an encoding (.tar.gz): those two suffixes are the cache's key
        stem, dot, ext = path.rpartition(os.sep)[2].rpartition(".")
        if not dot or not stem.strip("."):
            key = ""                 # no suffix, or a dotfile's name (.bashrc)
        else:
            before, dot, prev = stem.rpartition(".")
            key = "x." + (prev + "." if dot and before.strip(".") else "") + ext
        ctype = self._types.get(key)
        if ctype is None:
            ctype, encoding = mimetypes.guess_type(key)
            if encoding:
                ctype = _ENCODING_TYPES.get(encoding, "application/octet-stream")
            ctype = ctype or "application/octet-stream"
            if ctype.startswith("text/"):
                ctype += "; charset=utf-8"
            if len(self._types) >= _CACHE_MAX:
                self._types.clear()
            self._types[key] = ctype
        return ctype

    def _respond(self, environ, start_response, f, path, st, method):
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        mtime = int(st.st_mtime)
        last_modified = self._last_modified(mtime)
        validators = [("ETag", etag), ("Last-Modified", last_modified)]
        if self.cache_control:
            # RFC 9111 §4.3.4: a 304 carries the Cache-Control a 200 would have
            validators.append(("Cache-Control", self.cache_control))

        # conditional requests, RFC 9110 §13.2.2 order: If-None-Match, else IMS
        inm = environ.get("HTTP_IF_NONE_MATCH")
        if inm is not None:
            not_modified = _etag_matches(inm, etag)
        else:
            ims = environ.get("HTTP_IF_MODIFIED_SINCE")
            since = _http_date(ims) if ims else None
            not_modified = since is not None and mtime <= since
        if not_modified:
            f.close()
            start_response("304 Not Modified", validators)
            return []

        headers = [("Content-Type", self._content_type(path)), ("Accept-Ranges", "bytes")]
        headers.extend(validators)

        status, start, length = "200 OK", 0, size
        header = environ.get("HTTP_RANGE")
        if header is not None and method == "GET" and self._if_range(environ, etag, mtime):
            wanted = _parse_range(header, size)
            if wanted == "unsatisfiable":
                f.close()
                return _plain(start_response, "416 Range Not Satisfiable",
                              [("Content-Range", f"bytes */{size}")] + validators,
                              b"Range Not Satisfiable\n")
            if wanted is not None:
                start, end = wanted
                length = end - start + 1
                status = "206 Partial Content"
                headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        headers.append(("Content-Length", str(length)))
        start_response(status, headers)
        if method == "HEAD":
            f.close()
            return []
        if length != size:
            f.slice(start, length)
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None:
            return wrapper(f, _CHUNK)
        return _blocks(f)

    @staticmethod
    def _if_range(environ, etag, mtime):
        """RFC 9110 §13.1.5: the Range applies only if If-Range (when sent) matches:
        a strong ETag equal to ours, or exactly our Last-Modified date."""
        value = environ.get("HTTP_IF_RANGE")
        if value is None:
            return True
        value = value.strip()
        if value.startswith('"') or value.startswith("W/"):
            return value == etag
        return _http_date(value) == mtime
