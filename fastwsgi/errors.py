"""The exception tree of fastwsgi.

Contract: every error the parser raises is an ``HttpParserError`` subclass whose
``status_code`` is the HTTP status the server answers with (and then closes the
connection). ``ResponseError`` covers what the *application* did wrong (bad status,
header injection, start_response misuse): the server answers 500 if it still can.
``ConfigError``, ``AppLoadError`` and ``StartupError`` stop the start of a server
(a bad setting, an app that does not load): the CLI prints them as one line.
Pure Python, and importing nothing, so every module (the compiled ones included)
raises and catches the same classes without an import cycle.
"""

__all__ = [
    "FastWSGIError",
    "HttpParserError",
    "InvalidRequestLine",
    "ProxyProtocolError",
    "InvalidTarget",
    "UnsupportedVersion",
    "InvalidHeader",
    "InvalidFraming",
    "InvalidChunk",
    "UnsupportedTransferCoding",
    "ExpectationFailed",
    "RequestLineTooLong",
    "HeadersTooLarge",
    "BodyTooLarge",
    "ResponseError",
    "ClientDisconnected",
    "RequestTimeout",
    "BodyTimeout",
    "ConfigError",
    "AppLoadError",
    "StartupError",
    "ApplicationExit",
]


class FastWSGIError(Exception):
    """Root of every error fastwsgi raises on purpose."""


class HttpParserError(FastWSGIError):
    """The request is malformed: answer ``status_code`` and close the connection."""

    status_code = 400
    reason = "Bad Request"

    def __init__(self, message=None):
        super().__init__(message or self.reason)

    @property
    def message(self):
        return self.args[0]


class InvalidRequestLine(HttpParserError):
    """Method, spacing or line ending of the request line is not RFC 9112 §3."""


class MethodTooLong(InvalidRequestLine):
    """A method longer than any the server implements (RFC 9112 §3: 501)."""

    status_code = 501
    reason = "Not Implemented"


class ProxyProtocolError(InvalidRequestLine):
    """The connection does not start with a valid PROXY protocol header (a listener
    with --proxy-protocol; fastwsgi._proxyproto)."""


class UntrustedPeer(ProxyProtocolError):
    """A PROXY protocol header from a peer outside the listener's trust list."""


class InvalidTarget(HttpParserError):
    """The request-target is not origin-, absolute- or asterisk-form (RFC 9112 §3.2)."""


class UnsupportedVersion(HttpParserError):
    """A well-formed HTTP version other than 1.0 and 1.1 (RFC 9110 §15.6.6)."""

    status_code = 505
    reason = "HTTP Version Not Supported"


class InvalidHeader(HttpParserError):
    """A field line breaks RFC 9110 §5 / RFC 9112 §5 (token, CTL, obs-fold, Host)."""


class InvalidFraming(HttpParserError):
    """Content-Length / Transfer-Encoding are missing, malformed or in conflict (RFC 9112 §6)."""


class InvalidChunk(InvalidFraming):
    """Chunked body framing is malformed (RFC 9112 §7.1)."""


class UnsupportedTransferCoding(HttpParserError):
    """A transfer coding other than a final ``chunked`` (RFC 9112 §6.1)."""

    status_code = 501
    reason = "Not Implemented"


class ExpectationFailed(HttpParserError):
    """An Expect value other than ``100-continue`` (RFC 9110 §10.1.1)."""

    status_code = 417
    reason = "Expectation Failed"


class RequestLineTooLong(HttpParserError):
    status_code = 414
    reason = "URI Too Long"


class HeadersTooLarge(HttpParserError):
    status_code = 431
    reason = "Request Header Fields Too Large"


class BodyTooLarge(HttpParserError):
    status_code = 413
    reason = "Content Too Large"


class ResponseError(FastWSGIError):
    """The application broke PEP 3333 (status, headers, start_response use)."""

    status_code = 500
    reason = "Internal Server Error"


class ClientDisconnected(FastWSGIError, OSError):
    """The client went away while the application read its body or wrote a response."""


class BodyTimeout(HttpParserError):
    """The request body did not arrive in time (too slow, or stalled): 408 and close."""

    status_code = 408
    reason = "Request Timeout"


class RequestTimeout(BaseException):
    """Raised *inside the thread running the application* when its request passed
    ``--timeout``; the client has been (or is being) answered 504 Gateway Timeout.

    A ``BaseException``, not an ``Exception``: an app's ``except Exception`` must not
    swallow it and carry on with a request that has already been answered.
    """

    status_code = 504
    reason = "Gateway Timeout"


class ApplicationExit(FastWSGIError):
    """The application raised ``SystemExit`` (``sys.exit()``) during a request: the
    client gets 500, the worker finishes its other requests and is replaced (an app
    cannot stop the server)."""

    status_code = 500
    reason = "Internal Server Error"


# ------------------------------------------------------------------ starting the server
# (not about a request: the CLI prints these as one line "fastwsgi: error: ..." and
# exits 1; they carry no status_code)


class ConfigError(FastWSGIError, ValueError):
    """A setting has a bad value; ``str()`` is one line naming source and setting."""


class AppLoadError(FastWSGIError):
    """The application could not be loaded; ``str()`` is one line saying why.

    ``original`` is the exception the app's own code raised (importing the module,
    or calling its factory), or None when the spec itself is wrong: the CLI prints
    its traceback before the one line (``fastwsgi._loader.app_traceback``).
    """

    def __init__(self, message, original=None):
        super().__init__(message)
        self.original = original


class StartupError(FastWSGIError):
    """Something else the user can fix stops the start (a hook raised, the pid file
    cannot be written, --chdir fails); ``str()`` is one line."""
