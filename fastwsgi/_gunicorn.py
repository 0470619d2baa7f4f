"""gunicorn's settings that are not fastwsgi settings: what each one becomes here.

gunicorn config files and command lines are meant to carry over unchanged.  Every
gunicorn setting (the ``Setting`` classes of gunicorn/config.py, 25.x: commit
65ac1a3 of 2026-08-22) is either

* a fastwsgi setting of the same name, or one whose ``aliases`` (config.py's table)
  hold the gunicorn name (``preload_app`` -> ``preload``): it works; or
* listed in ``UNSUPPORTED`` below with the values that need nothing from us
  (gunicorn's default: the feature is off) and one line saying what to use
  instead.  Such a value is accepted (with a note in the log when it is not the
  default); any other value is refused with that line, never dropped in silence.

Contract: ``judge(name, value) -> (verdict, text)`` where verdict is "ok" (nothing
to do), "note" (accepted, ``text`` says why it changes nothing), "warn" (a hook
whose moment fastwsgi does not have, such as pre_exec: kept, never called, and
said so at start) or "refuse" (``text`` is the one-line reason); ``FLAGS`` maps gunicorn's command-line flags that
fastwsgi does not declare to ``(name, takes_value)`` (a flag without a value
stores True, or its ``CONST``).  ``GUNICORN_SETTINGS`` lists
every gunicorn name in gunicorn's order, for the docs table and its test.
A name here that later becomes a fastwsgi setting is simply no longer looked up
(settings, aliases and declared flags come first).  The CLI's parser reads
``FLAGS`` and drops this module again with argparse; fastwsgi.config imports it
only for a name it does not know: a plain server does not keep it.
"""

__all__ = ["GUNICORN_SETTINGS", "UNSUPPORTED", "FLAGS", "CONST", "ANY", "NEVER", "judge",
           "SECURE_SCHEME_DEFAULT"]

ANY = object()   # every value is fine: the setting has nothing to act on here
NEVER = object()  # a hook for a moment fastwsgi does not have: kept, never called

# gunicorn's default: X-Forwarded-Proto is the one fastwsgi reads (with Forwarded)
SECURE_SCHEME_DEFAULT = {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https",
                         "X-FORWARDED-SSL": "on"}

# Every gunicorn setting name, in gunicorn's order.
GUNICORN_SETTINGS = (
    "config", "wsgi_app", "bind", "backlog", "workers", "worker_class", "threads",
    "worker_connections", "max_requests", "max_requests_jitter", "timeout",
    "graceful_timeout", "keepalive", "limit_request_line", "limit_request_fields",
    "limit_request_field_size", "reload", "reload_engine", "reload_extra_files", "spew",
    "check_config", "print_config", "preload_app", "sendfile", "reuse_port", "chdir",
    "daemon", "raw_env", "pidfile", "worker_tmp_dir", "user", "group", "umask",
    "initgroups", "tmp_upload_dir", "secure_scheme_headers", "forwarded_allow_ips",
    "accesslog", "disable_redirect_access_to_syslog", "access_log_format", "errorlog",
    "loglevel", "capture_output", "logger_class", "logconfig", "logconfig_dict",
    "logconfig_json", "syslog_addr", "syslog", "syslog_prefix", "syslog_facility",
    "enable_stdio_inheritance", "statsd_host", "dogstatsd_tags", "statsd_prefix",
    "enable_backlog_metric", "proc_name", "default_proc_name", "pythonpath", "paste",
    "on_starting", "on_reload", "when_ready", "pre_fork", "post_fork",
    "post_worker_init", "worker_int", "worker_abort", "pre_exec", "pre_request",
    "post_request", "child_exit", "worker_exit", "nworkers_changed", "on_exit",
    "ssl_context", "proxy_protocol", "proxy_allow_ips", "protocol", "uwsgi_allow_ips",
    "keyfile", "certfile", "ssl_version", "cert_reqs", "ca_certs", "suppress_ragged_eofs",
    "do_handshake_on_connect", "ciphers", "http_protocols", "http2_cleartext",
    "http2_max_concurrent_streams", "http2_initial_window_size", "http2_max_frame_size",
    "http2_max_header_list_size", "raw_paste_global_conf", "permit_obsolete_folding",
    "strip_header_spaces", "permit_unconventional_http_method",
    "permit_unconventional_http_version", "casefold_http_method", "forwarder_headers",
    "header_map", "asgi_loop", "asgi_lifespan", "asgi_disconnect_grace_period",
    "http_parser", "root_path", "dirty_apps", "dirty_workers", "dirty_timeout",
    "dirty_threads", "dirty_graceful_timeout", "on_dirty_starting", "dirty_post_fork",
    "dirty_worker_init", "dirty_worker_exit", "control_socket", "control_socket_mode",
    "control_socket_disable",
)

_TLS = ("fastwsgi does not terminate TLS: put nginx, HAProxy or a load balancer in "
        "front (docs/deployment.md)")
_SYSLOG = ("fastwsgi does not write to syslog: its logs go to stderr/stdout or "
           "--error-logfile/--access-logfile (journald collects stderr)")
_STATSD = ("fastwsgi has no statsd client: scrape its Prometheus metrics instead "
           "(docs/observability.md)")
_LOGCONF = ("the error log is the 'fastwsgi.error' logger of the logging module: "
            "configure it in an on_starting hook (logging.config.dictConfig)")
_HTTP2 = "fastwsgi speaks HTTP/1.1 only: put an HTTP/2 proxy in front"
_ASGI = "fastwsgi serves WSGI applications only"
_DIRTY = "fastwsgi has no dirty arbiters: run background work in a task queue"
_STRICT = ("fastwsgi parses requests strictly (RFC 9112) and has no switch to relax it: "
           "fix the client")
_TRUST_LIST = ("fastwsgi takes PROXY headers, uwsgi packets and forwarded headers "
               "from the peers of one list: set --forwarded-allow-ips (default "
               "127.0.0.1,::1,unix)")

# name -> (values that need nothing here, what to use instead)
UNSUPPORTED = {
    "limit_request_field_size": ((8190,), "use --limit-header-size (a limit on the "
                                 "whole request head; default 64K)"),
    "reload_engine": (("auto", "poll"), "fastwsgi's --reload polls modification times "
                      "(there is no engine to choose)"),
    "spew": ((False,), "fastwsgi has no tracing switch: use a profiler, or "
             "sys.settrace in a post_worker_init hook"),
    "sendfile": ((None, True), "fastwsgi always uses sendfile() for wsgi.file_wrapper "
                 "and --static; it cannot be turned off"),
    "daemon": ((False,), "fastwsgi does not daemonize: run it under systemd, "
               "supervisord or a container runtime"),
    "worker_tmp_dir": (ANY, "workers report to the master through shared memory: no "
                       "heartbeat files, nothing to put there"),
    "umask": ((0,), "set it where fastwsgi is started (systemd UMask=, the shell's "
              "umask); unix sockets take --unix-socket-mode"),
    "initgroups": ((False, True), "with --user, fastwsgi always gives the process the "
                   "user's supplementary groups (initgroups)"),
    "tmp_upload_dir": ((None,), "request bodies are bounded by --limit-request-body; "
                       "temporary files go to TMPDIR"),
    "secure_scheme_headers": (({"X-FORWARDED-PROTO": "https"},),
                              "fastwsgi reads X-Forwarded-Proto and Forwarded: proto= "
                              "from --forwarded-allow-ips peers (no other scheme "
                              "headers; gunicorn's default, or a part of it with "
                              "X-FORWARDED-PROTO, is accepted with a note): have the "
                              "proxy send X-Forwarded-Proto"),
    "disable_redirect_access_to_syslog": ((False,), _SYSLOG),
    "logger_class": (("gunicorn.glogging.Logger", "simple"), _LOGCONF),
    "logconfig": ((None,), _LOGCONF),
    "logconfig_dict": (({},), _LOGCONF),
    "logconfig_json": ((None,), _LOGCONF),
    "syslog_addr": (ANY, _SYSLOG + "; syslog_addr has no effect without syslog"),
    "syslog": ((False,), _SYSLOG),
    "syslog_prefix": ((None,), _SYSLOG),
    "syslog_facility": (("user",), _SYSLOG),
    "enable_stdio_inheritance": (ANY, "fastwsgi never daemonizes, so the app's stdout "
                                 "and stderr are always inherited"),
    "statsd_host": ((None,), _STATSD),
    "dogstatsd_tags": (("",), _STATSD),
    "statsd_prefix": (("",), _STATSD),
    "enable_backlog_metric": ((False,), _STATSD),
    "default_proc_name": (ANY, "process titles come from proc_name (-n/--name)"),
    "paste": ((None,), "name the WSGI app (MODULE:NAME); a PasteDeploy app loads "
              "through a factory, MODULE:FACTORY()"),
    "pre_exec": (NEVER, "fastwsgi never re-executes itself (no SIGUSR2 binary "
                 "upgrade): restart the service to run new code, or send SIGHUP"),
    "ssl_context": (NEVER, _TLS),
    "proxy_allow_ips": (("127.0.0.1,::1", "127.0.0.1", "::1,127.0.0.1"), _TRUST_LIST),
    "uwsgi_allow_ips": (("127.0.0.1,::1", "127.0.0.1", "::1,127.0.0.1"), _TRUST_LIST),
    "keyfile": ((None,), _TLS),
    "certfile": ((None,), _TLS),
    "ssl_version": (ANY, "deprecated and ignored by gunicorn as well; " + _TLS),
    "cert_reqs": ((0,), _TLS),
    "ca_certs": ((None,), _TLS),
    "suppress_ragged_eofs": ((True,), _TLS),
    "do_handshake_on_connect": ((False,), _TLS),
    "ciphers": ((None,), _TLS),
    "http_protocols": (("h1",), _HTTP2),
    "http2_cleartext": (("off", False), _HTTP2),
    "http2_max_concurrent_streams": ((100,), _HTTP2),
    "http2_initial_window_size": ((65535,), _HTTP2),
    "http2_max_frame_size": ((16384,), _HTTP2),
    "http2_max_header_list_size": ((65536,), _HTTP2),
    "raw_paste_global_conf": (([],), "no PasteDeploy: pass settings to a factory, "
                              "MODULE:FACTORY('arg', key=value)"),
    "permit_obsolete_folding": ((False,), _STRICT),
    "strip_header_spaces": ((False,), _STRICT),
    "permit_unconventional_http_method": ((False,), _STRICT),
    "permit_unconventional_http_version": ((False,), _STRICT),
    "casefold_http_method": ((False,), _STRICT),
    "forwarder_headers": (("SCRIPT_NAME,PATH_INFO", ["SCRIPT_NAME", "PATH_INFO"]),
                          "no header sets the environ here: a mount prefix is "
                          "--root-path (or PREFIX=APP_SPEC)"),
    "header_map": (("drop",), "fastwsgi always drops header names with '_' (it never "
                   "maps two names onto one environ key)"),
    "asgi_loop": (("auto",), _ASGI),
    "asgi_lifespan": (("auto",), _ASGI),
    "asgi_disconnect_grace_period": ((3,), _ASGI),
    "http_parser": (("auto",), "fastwsgi has one (compiled) request parser"),
    "dirty_apps": (([],), _DIRTY),
    "dirty_workers": ((0,), _DIRTY),
    "dirty_timeout": ((300,), _DIRTY),
    "dirty_threads": ((1,), _DIRTY),
    "dirty_graceful_timeout": ((30,), _DIRTY),
    "on_dirty_starting": (NEVER, _DIRTY),
    "dirty_post_fork": (NEVER, _DIRTY),
    "dirty_worker_init": (NEVER, _DIRTY),
    "dirty_worker_exit": (NEVER, _DIRTY),
    "control_socket": (ANY, "fastwsgi has no control socket (so nothing listens "
                       "there): signals do its work (docs/process-model.md)"),
    "control_socket_mode": (ANY, "fastwsgi has no control socket"),
    "control_socket_disable": (ANY, "fastwsgi has no control socket"),
}

# gunicorn's command-line flags for the names above: flag -> (name, takes a value)
FLAGS = {
    "--limit-request-field_size": ("limit_request_field_size", True),
    "--limit-request-field-size": ("limit_request_field_size", True),
    "--reload-engine": ("reload_engine", True),
    "--spew": ("spew", False),
    "--no-sendfile": ("sendfile", False),
    "-D": ("daemon", False), "--daemon": ("daemon", False),
    "--worker-tmp-dir": ("worker_tmp_dir", True),
    "-m": ("umask", True), "--umask": ("umask", True),
    "--initgroups": ("initgroups", False),
    "--disable-redirect-access-to-syslog": ("disable_redirect_access_to_syslog", False),
    "--logger-class": ("logger_class", True),
    "--log-config": ("logconfig", True),
    "--log-config-json": ("logconfig_json", True),
    "--log-syslog-to": ("syslog_addr", True),
    "--log-syslog": ("syslog", False),
    "--log-syslog-prefix": ("syslog_prefix", True),
    "--log-syslog-facility": ("syslog_facility", True),
    "-R": ("enable_stdio_inheritance", False),
    "--enable-stdio-inheritance": ("enable_stdio_inheritance", False),
    "--statsd-host": ("statsd_host", True),
    "--dogstatsd-tags": ("dogstatsd_tags", True),
    "--statsd-prefix": ("statsd_prefix", True),
    "--enable-backlog-metric": ("enable_backlog_metric", False),
    "--paste": ("paste", True), "--paster": ("paste", True),
    "--proxy-allow-from": ("proxy_allow_ips", True),
    "--uwsgi-allow-from": ("uwsgi_allow_ips", True),
    "--keyfile": ("keyfile", True), "--certfile": ("certfile", True),
    "--ssl-version": ("ssl_version", True), "--cert-reqs": ("cert_reqs", True),
    "--ca-certs": ("ca_certs", True),
    "--suppress-ragged-eofs": ("suppress_ragged_eofs", False),
    "--do-handshake-on-connect": ("do_handshake_on_connect", False),
    "--ciphers": ("ciphers", True),
    "--http-protocols": ("http_protocols", True),
    "--http2-cleartext": ("http2_cleartext", True),
    "--http2-max-concurrent-streams": ("http2_max_concurrent_streams", True),
    "--http2-initial-window-size": ("http2_initial_window_size", True),
    "--http2-max-frame-size": ("http2_max_frame_size", True),
    "--http2-max-header-list-size": ("http2_max_header_list_size", True),
    "--paste-global": ("raw_paste_global_conf", True),
    "--permit-obsolete-folding": ("permit_obsolete_folding", False),
    "--strip-header-spaces": ("strip_header_spaces", False),
    "--permit-unconventional-http-method": ("permit_unconventional_http_method", False),
    "--permit-unconventional-http-version": ("permit_unconventional_http_version", False),
    "--casefold-http-method": ("casefold_http_method", False),
    "--forwarder-headers": ("forwarder_headers", True),
    "--header-map": ("header_map", True),
    "--asgi-loop": ("asgi_loop", True),
    "--asgi-lifespan": ("asgi_lifespan", True),
    "--asgi-disconnect-grace-period": ("asgi_disconnect_grace_period", True),
    "--http-parser": ("http_parser", True),
    "--dirty-app": ("dirty_apps", True), "--dirty-workers": ("dirty_workers", True),
    "--dirty-timeout": ("dirty_timeout", True), "--dirty-threads": ("dirty_threads", True),
    "--dirty-graceful-timeout": ("dirty_graceful_timeout", True),
    "--control-socket": ("control_socket", True),
    "--control-socket-mode": ("control_socket_mode", True),
    "--no-control-socket": ("control_socket_disable", False),
}


# flags that store something else than True (gunicorn's store_const)
CONST = {"--no-sendfile": False}


def _same(value, harmless):
    if value in harmless:
        return True
    # from the command line every value is a string (and a bare flag is True)
    return isinstance(value, str) and value.strip() in [str(h) for h in harmless]


def judge(name, value):
    """("ok" | "note" | "refuse", text) for gunicorn setting ``name`` set to ``value``."""
    harmless, instead = UNSUPPORTED[name]
    if harmless is ANY:
        return "note", f"has no effect in fastwsgi: {instead}"
    if harmless is NEVER:
        if value is None:
            return "ok", ""
        if not callable(value):
            return "refuse", f"expected a callable (a gunicorn hook), got {value!r}"
        return "warn", f"gunicorn hook never called by fastwsgi: {instead}"
    if _same(value, harmless):
        return "ok", ""
    if name == "secure_scheme_headers" and isinstance(value, dict):
        # a subset of gunicorn's default that keeps X-Forwarded-Proto: https
        items = set(value.items())
        if ("X-FORWARDED-PROTO", "https") in items and items <= set(
                SECURE_SCHEME_DEFAULT.items()):
            return "note", f"only X-Forwarded-Proto counts: {instead}"
    return "refuse", f"gunicorn setting not supported: {instead}"
