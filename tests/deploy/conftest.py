"""Loaders for the deployment files (deploy/) and the code they must agree with. No Docker, no systemd:
the files are parsed and their wiring checked, so these tests run anywhere in well under a second."""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
SETTINGS = ROOT / "src" / "callbroker" / "settings.py"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

#: What every app node must be given (the production contract in docs/deploy.md).
REQUIRED_APP_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CALLBROKER_PUBLIC_URL",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_AUTH_TOKENS_EXTRA",
    "CALLBROKER_SECRET_KEY",
    "CALLBROKER_ENV",
    "CALLBROKER_ALLOWED_HOSTS",
    "CALLBROKER_FALLBACK_NUMBER",
    "CALLBROKER_DATA_DIR",
    "CALLBROKER_LOG_FORMAT",
)
APP_NODES = ("app1", "app2")
APP_PORT = 8000

_ENV_HELPERS = re.compile(r"^env_\w+$")


def settings_env_names(path: Path = SETTINGS) -> set[str]:
    """Every environment variable settings.py reads: ``env_*("NAME", ...)``, ``os.environ.get("NAME")``,
    ``os.getenv("NAME")`` and ``os.environ["NAME"]`` with a literal name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            func = node.func
            if isinstance(func, ast.Name) and _ENV_HELPERS.match(func.id):
                names.add(first.value)
            elif isinstance(func, ast.Attribute) and (
                (func.attr == "get" and _is_os_environ(func.value))
                or (func.attr == "getenv" and _is_name(func.value, "os"))
            ):
                names.add(first.value)
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                names.add(key.value)
    return names


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _is_os_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and _is_name(node.value, "os")


def env_file_entries(path: Path) -> dict[str, tuple[str, bool]]:
    """NAME -> (value, active) for ``NAME=value`` lines, active or commented out (``# NAME=value``)."""
    entries: dict[str, tuple[str, bool]] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            entries[match.group(2)] = (match.group(3), match.group(1) is None)
    return entries


def read_unit(path: Path) -> configparser.ConfigParser:
    """A systemd unit as INI. Repeated keys are allowed (the last wins), keys keep their case, ``%``
    specifiers are left alone; continuation lines must be indented, which systemd accepts too."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


def unit_command(value: str) -> str:
    """An Exec*= value as systemd sees it: backslash-newline continuations joined with a space."""
    return re.sub(r"\\\n\s*", " ", value).strip()


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def volume_mounts(service: dict) -> dict[str, str]:
    """Container path -> source (a named volume or a host path) for short- and long-syntax volumes."""
    mounts = {}
    for item in service.get("volumes") or []:
        if isinstance(item, str):
            parts = item.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
        else:
            source, target = item.get("source", ""), item["target"]
        mounts[target] = source
    return mounts


def healthcheck_command(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test", [])
    return " ".join(test) if isinstance(test, list) else str(test)


def command_line(value) -> str:
    return " ".join(value) if isinstance(value, list) else str(value or "")


def caddy_upstreams(caddyfile: str) -> list[str]:
    """The upstreams on the Caddyfile's reverse_proxy line(s)."""
    upstreams = []
    for match in re.finditer(r"^\s*reverse_proxy\s+([^{\n]*)", caddyfile, re.MULTILINE):
        upstreams += [u for u in match.group(1).split() if not u.startswith(("@", "/", "*"))]
    return upstreams


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="session")
def caddyfile() -> str:
    return (DEPLOY / "Caddyfile").read_text()


@pytest.fixture(scope="session")
def deploy_doc() -> str:
    return DEPLOY_DOC.read_text()
