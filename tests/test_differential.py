"""Every VALID corpus case parsed by fastwsgi._parser and by independent parsers.

httptools (llhttp) and h11 must agree with us on the method, the raw target,
the header fields (normalised to environ keys the way we build them), the body
and the number of complete messages.  Where a reference parser differs on
purpose, the case is listed in EXPECTED_DIFFERENCES / H11_DIFFERENCES with the
reason and runs as a strict xfail, so a change on either side is noticed.
"""

import pytest

from test_corpus import VALID, Run

# Headers we drop on purpose (PEP 3333: a name with "_" would collide with "-").
def _dropped(name):
    return "_" in name


EXPECTED_DIFFERENCES = {
    # case name -> why httptools (llhttp) does not match fastwsgi
    "valid/013-method-all-tchars":
        "llhttp knows only registered method names; RFC 9112 §3.1 allows any token",
    "valid/014-method-lowercase-token":
        "llhttp knows only registered method names; 'get' is a valid (unknown) token",
    "valid/075-chunked-te-ows":
        "llhttp rejects HTAB OWS around 'chunked'; RFC 9112 §5.1 strips OWS from every value",
    "valid/083-chunked-extension-bws":
        "llhttp rejects BWS between chunk-size and ';' (allowed by RFC 9112 §7.1.1)",
    "valid/117-version-1-2-served-as-1-1":
        "llhttp rejects HTTP/1.2; RFC 9110 §2.5 serves a higher 1.x minor as HTTP/1.1",
    "valid/118-version-1-9-close":
        "llhttp rejects HTTP/1.9; RFC 9110 §2.5 serves a higher 1.x minor as HTTP/1.1",
}

H11_DIFFERENCES = {
    # case name -> why h11 does not match fastwsgi
    "valid/015-leading-crlf-one":
        "h11 does not skip empty lines before the request-line (RFC 9112 §2.2 SHOULD)",
    "valid/016-leading-crlf-two":
        "h11 does not skip empty lines before the request-line (RFC 9112 §2.2 SHOULD)",
    "valid/112-pipeline-crlf-between":
        "h11 does not skip an empty line between pipelined requests (RFC 9112 §2.2)",
    "valid/073-chunked-te-capitalized":
        "h11 lowercases the Transfer-Encoding value; we pass the field through as sent",
    "valid/074-chunked-te-uppercase":
        "h11 lowercases the Transfer-Encoding value; we pass the field through as sent",
    "valid/115-pipeline-http10-keepalive":
        "h11 never keeps an HTTP/1.0 connection alive, so it stops after the first request",
    "valid/083-chunked-extension-bws":
        "h11 rejects BWS between chunk-size and ';' (allowed by RFC 9112 §7.1.1)",
}


def environ_key(name):
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def normalise(method, target, fields, body):
    """(method, target, {environ key: joined value}, body) from raw header pairs."""
    headers = {}
    for name, value in fields:
        if _dropped(name):
            continue
        key = environ_key(name)
        value = value.strip(" \t")
        if key in headers:
            sep = "; " if key == "HTTP_COOKIE" else ", "
            headers[key] = headers[key] + sep + value
        else:
            headers[key] = value
    if "://" in target:
        # absolute-form: the target's authority is the Host (RFC 9112 §3.2.2)
        headers["HTTP_HOST"] = target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    return (method, target, headers, body)


def ours(raw):
    run = Run([raw])
    assert run.error is None, f"fastwsgi raised {run.error!r}"
    out = []
    for m in run.complete:
        env = m["environ"]
        headers = {k: v for k, v in env.items()
                   if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")}
        out.append((env["REQUEST_METHOD"], env["RAW_URI"], headers, m["body"]))
    return out


def by_httptools(raw):
    httptools = pytest.importorskip("httptools")

    class Protocol:
        def __init__(self):
            self.messages = []
            self.current = None

        def on_message_begin(self):
            self.current = {"url": b"", "fields": [], "body": b"", "in_head": True}

        def on_url(self, url):
            self.current["url"] += url

        def on_header(self, name, value):
            if self.current["in_head"]:  # llhttp reports trailer fields here too
                self.current["fields"].append((name, value))

        def on_headers_complete(self):
            self.current["in_head"] = False
            self.current["method"] = parser.get_method()

        def on_body(self, body):
            self.current["body"] += body

        def on_message_complete(self):
            self.messages.append(self.current)

    proto = Protocol()
    parser = httptools.HttpRequestParser(proto)
    parser.feed_data(raw)
    return [
        normalise(m["method"].decode("latin-1"), m["url"].decode("latin-1"),
                  [(n.decode("latin-1"), v.decode("latin-1")) for n, v in m["fields"]], m["body"])
        for m in proto.messages
    ]


def by_h11(raw):
    h11 = pytest.importorskip("h11")
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    conn.receive_data(raw)
    out = []
    current = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            break
        if event is h11.PAUSED:
            if conn.our_state is not h11.SEND_RESPONSE:
                break
            # answer so that h11 moves on to the next pipelined request
            conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                break
            conn.start_next_cycle()
            continue
        if isinstance(event, h11.Request):
            current = {"method": event.method, "target": event.target, "body": b"",
                       "fields": list(event.headers.raw_items())}
        elif isinstance(event, h11.Data):
            current["body"] += event.data
        elif isinstance(event, h11.EndOfMessage):
            out.append(normalise(current["method"].decode("latin-1"), current["target"].decode("latin-1"),
                                 [(n.decode("latin-1"), v.decode("latin-1")) for n, v in current["fields"]],
                                 current["body"]))
            current = None
        elif isinstance(event, h11.ConnectionClosed):
            break
    return out


def _params(differences):
    return [
        pytest.param(raw, id=name, marks=[pytest.mark.xfail(reason=differences[name], strict=True)]
                     if name in differences else [])
        for name, raw, _ in VALID
    ]


def _agree(reference, raw):
    mine = ours(raw)
    theirs = reference(raw)
    assert len(theirs) == len(mine), f"{len(theirs)} messages, fastwsgi saw {len(mine)}"
    for i, (a, b) in enumerate(zip(mine, theirs)):
        assert a[0] == b[0], f"message {i}: method"
        assert a[1] == b[1], f"message {i}: target"
        assert a[2] == b[2], f"message {i}: headers"
        assert a[3] == b[3], f"message {i}: body"


@pytest.mark.parametrize("raw", _params(EXPECTED_DIFFERENCES))
def test_agrees_with_httptools(raw):
    _agree(by_httptools, raw)


@pytest.mark.parametrize("raw", _params(H11_DIFFERENCES))
def test_agrees_with_h11(raw):
    _agree(by_h11, raw)


def test_difference_lists_name_real_cases():
    names = {name for name, _, _ in VALID}
    assert set(EXPECTED_DIFFERENCES) <= names
    assert set(H11_DIFFERENCES) <= names
