"""Django end to end: tests/apps/djangoproject under a real `python -m fastwsgi`.

The project runs as a Django user runs it: from its own directory, as
`mysite.wsgi:application`, with DEBUG False and ALLOWED_HOSTS enforced; static
files are collected and served with --static as the README shows. Each module run migrates a fresh sqlite
database in a temporary directory and creates a superuser with
`createsuperuser --noinput`; the tests then go through the admin login (CSRF
cookie and token), a CSRF rejection, a model form, and `--root-path`.
"""

import os
import re
import sqlite3
import subprocess
import sys

import pytest
import requests

from conftest import APPS, HERE, ServerProcess

PROJECT = os.path.join(APPS, "djangoproject")
USER, PASSWORD = "admin", "s3cret-pässword"
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def manage(*args, env):
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT, env={**os.environ, **env}, check=True, timeout=60,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def django_env(tmp_path_factory):
    db = tmp_path_factory.mktemp("django") / "db.sqlite3"
    env = {"FASTWSGI_DJANGO_DB": str(db), "DJANGO_SETTINGS_MODULE": "mysite.settings"}
    manage("migrate", "--noinput", "-v0", env=env)
    manage("createsuperuser", "--noinput", env={
        **env,
        "DJANGO_SUPERUSER_USERNAME": USER,
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
    })
    return env


@pytest.fixture(scope="module")
def base(django_env):
    srv = ServerProcess(["mysite.wsgi:application"], env=django_env, cwd=PROJECT)
    yield f"http://127.0.0.1:{srv.port}"
    srv.stop()


@pytest.fixture(scope="module")
def prefixed(django_env):
    srv = ServerProcess(["--root-path", "/prefix", "mysite.wsgi:application"],
                        env=django_env, cwd=PROJECT)
    yield f"http://127.0.0.1:{srv.port}"
    srv.stop()


def csrf_token_from(resp):
    m = CSRF_INPUT.search(resp.text)
    assert m, f"no csrfmiddlewaretoken in:\n{resp.text[:2000]}"
    return m.group(1)


def login(s, root, login_path):
    r = s.get(root + login_path, params={"next": "/admin/"}, timeout=10)
    assert r.status_code == 200
    assert "csrftoken" in s.cookies
    r = s.post(root + login_path, data={
        "csrfmiddlewaretoken": csrf_token_from(r),
        "username": USER,
        "password": PASSWORD,
        "next": "/admin/",
    }, allow_redirects=False, timeout=10)
    return r


def notes_in_db(env):
    with sqlite3.connect(env["FASTWSGI_DJANGO_DB"]) as db:
        return db.execute("SELECT title, body FROM notes_note ORDER BY id").fetchall()


def test_admin_requires_login(base):
    r = requests.get(base + "/admin/", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == "/admin/login/?next=/admin/"


def test_admin_login_and_dashboard(base):
    with requests.Session() as s:
        r = login(s, base, "/admin/login/")
        assert r.status_code == 302, r.text[:2000]
        assert r.headers["Location"] == "/admin/"
        assert "sessionid" in s.cookies
        r = s.get(base + "/admin/", timeout=10)
        assert r.status_code == 200
        assert r.url == base + "/admin/"
        assert "Site administration" in r.text
        assert f"<strong>{USER}</strong>" in r.text  # "Welcome, admin." in the header
        assert 'href="/admin/notes/note/"' in r.text


def test_admin_login_wrong_password(base):
    with requests.Session() as s:
        r = s.get(base + "/admin/login/", timeout=10)
        r = s.post(base + "/admin/login/", data={
            "csrfmiddlewaretoken": csrf_token_from(r),
            "username": USER,
            "password": "wrong",
        }, allow_redirects=False, timeout=10)
        assert r.status_code == 200
        assert "Please enter the correct username and password" in r.text
        assert "sessionid" not in s.cookies


def test_post_without_csrf_token_is_403(base):
    with requests.Session() as s:
        s.get(base + "/admin/login/", timeout=10)
        assert "csrftoken" in s.cookies  # cookie present, token omitted from the form
        r = s.post(base + "/admin/login/", data={"username": USER, "password": PASSWORD},
                   allow_redirects=False, timeout=10)
        assert r.status_code == 403
        assert "CSRF verification failed" in r.text
        assert "sessionid" not in s.cookies
    r = requests.post(base + "/notes/new/", data={"title": "x"}, timeout=10)
    assert r.status_code == 403


def test_model_form_creates_object(base, django_env):
    title, body = "Crème brûlée ✓", "line one\nline two & <three>"
    with requests.Session() as s:
        r = s.get(base + "/notes/new/", timeout=10)
        assert r.status_code == 200
        assert 'action="/notes/new/"' in r.text
        r = s.post(base + "/notes/new/", data={
            "csrfmiddlewaretoken": csrf_token_from(r), "title": title, "body": body,
        }, allow_redirects=False, timeout=10)
        assert r.status_code == 302, r.text[:2000]
        assert r.headers["Location"] == "/notes/"
        r = s.get(base + "/notes/", timeout=10)
        assert r.status_code == 200
        assert f'<li class="note">{title}</li>' in r.text
    assert (title, body) in notes_in_db(django_env)
    listed = requests.get(base + "/notes/json/", timeout=10).json()["notes"]
    assert {"title": title, "body": body} in [
        {"title": n["title"], "body": n["body"]} for n in listed
    ]


def test_model_form_invalid_creates_nothing(base, django_env):
    before = notes_in_db(django_env)
    with requests.Session() as s:
        r = s.get(base + "/notes/new/", timeout=10)
        r = s.post(base + "/notes/new/", data={
            "csrfmiddlewaretoken": csrf_token_from(r), "title": "", "body": "orphan",
        }, allow_redirects=False, timeout=10)
    assert r.status_code == 200
    assert "This field is required." in r.text
    assert notes_in_db(django_env) == before


def test_environ_seen_by_django(base):
    r = requests.get(base + "/notes/where/?q=%C3%A9", timeout=10)
    assert r.status_code == 200
    assert r.json() == {
        "script_name": "",
        "path_info": "/notes/where/",
        "path": "/notes/where/",
        "host": base[len("http://"):],
        "absolute_uri": base + "/notes/where/?q=%C3%A9",
        "reversed_list": "/notes/",
    }


def test_disallowed_host_is_400(base):
    r = requests.get(base + "/notes/", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 400
    # ...and an allowed one passes, on a host name other than the one bound.
    port = base.rsplit(":", 1)[1]
    r = requests.get(base + "/notes/where/", headers={"Host": f"localhost:{port}"}, timeout=10)
    assert r.status_code == 200
    assert r.json()["absolute_uri"] == f"http://localhost:{port}/notes/where/"


def test_chdir_option_finds_project(django_env):
    srv = ServerProcess(["--chdir", PROJECT, "mysite.wsgi:application"],
                        env=django_env, cwd=HERE)
    try:
        r = requests.get(f"http://127.0.0.1:{srv.port}/notes/where/", timeout=10)
        assert r.status_code == 200
        assert r.json()["path_info"] == "/notes/where/"
    finally:
        srv.stop()


def test_root_path_sets_script_name(prefixed):
    r = requests.get(prefixed + "/prefix/notes/where/", timeout=10)
    assert r.status_code == 200
    assert r.json() == {
        "script_name": "/prefix",
        "path_info": "/notes/where/",
        "path": "/prefix/notes/where/",
        "host": prefixed[len("http://"):],
        "absolute_uri": prefixed + "/prefix/notes/where/",
        "reversed_list": "/prefix/notes/",
    }


def test_root_path_admin_redirects_include_prefix(prefixed):
    r = requests.get(prefixed + "/prefix/admin/", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == "/prefix/admin/login/?next=/prefix/admin/"
    with requests.Session() as s:
        r = s.get(prefixed + "/prefix/admin/login/", timeout=10)
        assert r.status_code == 200
        assert 'action="/prefix/admin/login/"' in r.text
        r = s.post(prefixed + "/prefix/admin/login/", data={
            "csrfmiddlewaretoken": csrf_token_from(r),
            "username": USER,
            "password": PASSWORD,
            "next": "/prefix/admin/",
        }, allow_redirects=False, timeout=10)
        assert r.status_code == 302, r.text[:2000]
        assert r.headers["Location"] == "/prefix/admin/"
        r = s.get(prefixed + "/prefix/admin/", timeout=10)
        assert r.status_code == 200
        assert "Site administration" in r.text
        assert 'href="/prefix/admin/notes/note/"' in r.text


def test_root_path_model_form(prefixed, django_env):
    with requests.Session() as s:
        r = s.get(prefixed + "/prefix/notes/new/", timeout=10)
        assert r.status_code == 200
        assert 'action="/prefix/notes/new/"' in r.text
        r = s.post(prefixed + "/prefix/notes/new/", data={
            "csrfmiddlewaretoken": csrf_token_from(r), "title": "under prefix", "body": "",
        }, allow_redirects=False, timeout=10)
        assert r.status_code == 302, r.text[:2000]
        assert r.headers["Location"] == "/prefix/notes/"
    assert ("under prefix", "") in notes_in_db(django_env)


README = os.path.join(os.path.dirname(HERE), "README.md")


@pytest.fixture(scope="module")
def with_static(django_env, tmp_path_factory):
    """The README's recipe: STATIC_ROOT, collectstatic, --static /static=DIR."""
    root = tmp_path_factory.mktemp("staticfiles")
    env = {**django_env, "FASTWSGI_DJANGO_STATIC": str(root)}
    manage("collectstatic", "--noinput", "-v0", env=env)
    srv = ServerProcess(["--static", f"/static={root}", "mysite.wsgi"], env=env, cwd=PROJECT)
    yield f"http://127.0.0.1:{srv.port}", root
    srv.stop()


def test_collected_static_files_are_served(with_static):
    base, root = with_static
    page = requests.get(base + "/admin/login/", timeout=10)
    assert page.status_code == 200
    css = re.search(r'href="(/static/admin/css/[^"]+\.css)"', page.text).group(1)
    r = requests.get(base + css, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/css")
    with open(os.path.join(root, css[len("/static/"):]), "rb") as f:
        assert r.content == f.read()
    # still Django behind it
    assert requests.get(base + "/admin/", allow_redirects=False, timeout=10).status_code == 302


def test_readme_shows_the_static_files_recipe():
    text = open(README).read()
    for line in ('STATIC_ROOT = BASE_DIR / "staticfiles"',
                 "python manage.py collectstatic --noinput",
                 "fastwsgi mysite.wsgi --static /static=staticfiles"):
        assert line in text, line
