"""deploy/Dockerfile (non-root, `callbroker serve`) and deploy/nginx.conf (the certbot alternative)."""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.conftest import APP_PORT, DEPLOY, ROOT


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_the_image_is_python_311_slim():
    assert dockerfile_instructions()[0] == ("FROM", "python:3.11-slim")


def test_the_image_installs_the_project_from_the_repository():
    instructions = dockerfile_instructions()
    for keyword, rest in instructions:
        if keyword == "COPY":
            *sources, _destination = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository (the build context)"
    assert any(k == "RUN" and re.search(r"\bpip install\b", r) for k, r in instructions)


def test_the_image_runs_as_a_non_root_user():
    instructions = dockerfile_instructions()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    last_user = max(i for i, (k, _) in enumerate(instructions) if k == "USER")
    cmd = max(i for i, (k, _) in enumerate(instructions) if k == "CMD")
    assert last_user < cmd
    assert any(k == "RUN" and "useradd" in r and user in r for k, r in instructions)


def test_the_command_is_callbroker_serve_on_all_interfaces():
    cmds = [rest for keyword, rest in dockerfile_instructions() if keyword == "CMD"]
    argv = json.loads(cmds[-1])  # exec form: gunicorn gets the signals, no shell in between
    assert argv[:2] == ["callbroker", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--port") + 1] == str(APP_PORT)
    assert ("EXPOSE", str(APP_PORT)) in dockerfile_instructions()


def test_the_image_defaults_to_production_and_a_data_dir_the_user_owns():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"CALLBROKER_ENV=production", text)
    data_dir = re.search(r"CALLBROKER_DATA_DIR=(\S+)", text).group(1)
    assert re.search(rf"install -d -o callbroker -g callbroker -m \d+ {re.escape(data_dir)}(\s|$)", text)


# --------------------------------------------------------------------------- nginx


@pytest.fixture(scope="module")
def nginx() -> str:
    return (DEPLOY / "nginx.conf").read_text()


def _block(text: str, header: str) -> str:
    """The body of the first `header { ... }` block (nginx blocks don't nest braces in strings here)."""
    start = text.index(header)
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    raise AssertionError(f"unbalanced block {header}")


def test_nginx_upstream_has_both_nodes(nginx):
    upstream = _block(nginx, "upstream callbroker")
    servers = re.findall(r"^\s*server\s+(\S+)", upstream, re.MULTILINE)
    assert servers == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert "keepalive" in upstream


def test_nginx_terminates_tls_with_certbot_certificates(nginx):
    assert re.search(r"listen 443 ssl", nginx)
    assert re.search(r"ssl_certificate\s+/etc/letsencrypt/live/[^/]+/fullchain\.pem;", nginx)
    assert re.search(r"ssl_certificate_key\s+/etc/letsencrypt/live/[^/]+/privkey\.pem;", nginx)
    assert "/.well-known/acme-challenge/" in nginx
    assert re.search(r"return 308 https://\$host\$request_uri;", nginx)


def test_nginx_passes_the_headers_signatures_and_allowed_hosts_need(nginx):
    for header, value in [("Host", "$host"), ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
                          ("X-Forwarded-Proto", "$scheme")]:
        assert re.search(rf"proxy_set_header {header} {re.escape(value)};", nginx), header


def test_nginx_limits_carrier_bodies_and_hides_internal_endpoints(nginx):
    carriers = _block(nginx, "location /carriers/")
    assert re.search(r"client_max_body_size 64k;", carriers)
    assert "proxy_pass http://callbroker;" in carriers
    assert "return 404" in _block(nginx, "location = /metrics")
    assert "return 404" in _block(nginx, "location = /readyz")
    assert "/var/lib/callbroker/static/" in _block(nginx, "location /static/")
