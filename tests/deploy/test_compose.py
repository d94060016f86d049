"""deploy/docker-compose.yml and deploy/Caddyfile: two app nodes, PostgreSQL, Redis, a migrate job and
Caddy, wired the way docs/deploy.md says."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlparse

import pytest

from tests.deploy.conftest import (
    APP_NODES,
    APP_PORT,
    DEPLOY,
    REQUIRED_APP_ENV,
    ROOT,
    caddy_upstreams,
    command_line,
    depends_on,
    environment_of,
    healthcheck_command,
    volume_mounts,
)

INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")


def interpolated(value: str, placeholder: str = "x") -> str:
    """A value with every ${VAR...} replaced, as Compose would once deploy/.env is filled in."""
    return INTERPOLATION.sub(placeholder, value)


def test_the_stack_has_its_services(services):
    assert set(services) >= {"postgres", "redis", "migrate", *APP_NODES, "caddy"}


@pytest.mark.parametrize("name", [*APP_NODES, "migrate"])
def test_callbroker_containers_are_built_from_the_deploy_dockerfile(services, name):
    build = services[name]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT, "the build context is the repository root (the Dockerfile copies src/)"
    assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_app_nodes_and_migrate_run_the_same_image(services):
    images = {services[name]["image"] for name in (*APP_NODES, "migrate")}
    assert len(images) == 1, images


@pytest.mark.parametrize("node", APP_NODES)
@pytest.mark.parametrize("variable", REQUIRED_APP_ENV)
def test_app_nodes_get_every_required_variable(services, node, variable):
    assert variable in environment_of(services[node])


@pytest.mark.parametrize("name", [*APP_NODES, "migrate"])
def test_app_environment_points_at_the_stack(services, name):
    env = environment_of(services[name])
    assert env["CALLBROKER_ENV"] == "production"
    assert env["CALLBROKER_LOG_FORMAT"] == "json"
    database = urlparse(interpolated(env["DATABASE_URL"]))
    assert database.scheme in {"postgres", "postgresql"} and database.hostname == "postgres"
    assert database.port in (None, 5432)
    redis = urlparse(env["REDIS_URL"])
    assert redis.scheme == "redis" and redis.hostname == "redis"
    assert env["CALLBROKER_PUBLIC_URL"].startswith("https://"), "carriers sign the https URL they call"


def test_database_password_is_the_one_postgres_is_created_with(services):
    postgres_env = environment_of(services["postgres"])
    assert "${POSTGRES_PASSWORD" in postgres_env["POSTGRES_PASSWORD"]
    for node in APP_NODES:
        url = environment_of(services[node])["DATABASE_URL"]
        assert "${POSTGRES_PASSWORD" in url
        parsed = urlparse(interpolated(url))
        assert parsed.username == postgres_env["POSTGRES_USER"]
        assert parsed.path.lstrip("/") == postgres_env["POSTGRES_DB"]


@pytest.mark.parametrize("variable", ["CALLBROKER_SECRET_KEY"])
def test_secrets_are_required_interpolations_not_literals(services, variable):
    for node in APP_NODES:
        assert re.fullmatch(r"\$\{%s:\?[^}]+\}" % variable, environment_of(services[node])[variable])


@pytest.mark.parametrize("node", APP_NODES)
def test_each_way_to_verify_webhooks_is_passed_through_and_none_is_required_alone(services, node):
    """The app requires one of them at least (settings.py); compose required TWILIO_AUTH_TOKEN until
    2026-12-08, refusing a Telnyx-only (or per-account) installation that the app would take."""
    environment = environment_of(services[node])
    ways = ("TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_TOKENS", "TELNYX_PUBLIC_KEY")
    assert {name: environment.get(name) for name in ways} == {name: "${%s:-}" % name for name in ways}


@pytest.mark.parametrize("node", APP_NODES)
def test_app_nodes_wait_for_migrate_and_healthy_backends(services, node):
    deps = depends_on(services[node])
    assert deps.get("migrate") == "service_completed_successfully"
    assert deps.get("postgres") == "service_healthy"
    assert deps.get("redis") == "service_healthy"


@pytest.mark.parametrize("node", APP_NODES)
def test_app_nodes_serve_on_all_interfaces_and_check_readiness(services, node):
    service = services[node]
    assert command_line(service["command"]).startswith("callbroker serve")
    assert "0.0.0.0" in command_line(service["command"])
    assert f"--port {APP_PORT}" in command_line(service["command"])
    check = healthcheck_command(service)
    assert f"127.0.0.1:{APP_PORT}/readyz" in check
    assert "127.0.0.1" in environment_of(service)["CALLBROKER_ALLOWED_HOSTS"].split(",")


def test_each_app_node_has_its_own_name_in_the_logs(services):
    names = [environment_of(services[node]).get("CALLBROKER_NODE") for node in APP_NODES]
    assert names == list(APP_NODES)


def test_rate_limits_see_the_client_behind_the_proxy(services):
    for node in APP_NODES:
        trusted = environment_of(services[node])["CALLBROKER_RATE_TRUSTED_PROXIES"].split(",")
        networks = [ipaddress.ip_network(t.strip()) for t in trusted]
        # Docker's default address pools for bridge networks are all inside these.
        for pool in ("172.17.0.0/16", "172.18.0.0/16", "192.168.0.0/20"):
            assert any(ipaddress.ip_network(pool).subnet_of(n) for n in networks if n.version == 4), pool


def test_each_app_node_keeps_its_own_persistent_data_directory(compose, services):
    sources = []
    for node in APP_NODES:
        data_dir = environment_of(services[node])["CALLBROKER_DATA_DIR"]
        source = volume_mounts(services[node]).get(data_dir)
        assert source, f"{node}: nothing mounted on CALLBROKER_DATA_DIR={data_dir} (the spool would be lost)"
        assert source in compose["volumes"], f"{node}: {source} is not a named volume"
        sources.append(source)
    assert len(set(sources)) == len(sources), "two nodes share a spool directory"


def test_migrate_is_a_one_shot_job_that_migrates(services):
    migrate = services["migrate"]
    command = command_line(migrate["command"])
    assert "callbroker migrate" in command
    assert "callbroker partitions ensure" in command
    assert "callbroker collectstatic" in command
    assert str(migrate.get("restart", "no")) == "no"
    assert depends_on(migrate).get("postgres") == "service_healthy"
    assert "healthcheck" not in migrate


def test_postgres_is_15_with_a_volume_and_a_healthcheck(services):
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    assert volume_mounts(postgres).get("/var/lib/postgresql/data") == "pgdata"
    assert "pg_isready" in healthcheck_command(postgres)
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(environment_of(postgres))


def test_redis_is_7_append_only_with_a_volume_and_a_healthcheck(services):
    redis = services["redis"]
    assert redis["image"] == "redis:7"
    assert "--appendonly yes" in command_line(redis["command"])
    assert volume_mounts(redis).get("/data") == "redisdata"
    assert "redis-cli ping" in healthcheck_command(redis)


def test_only_the_proxy_publishes_ports(services):
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"caddy"}
    ports = {str(p).split(":")[0] for p in services["caddy"]["ports"]}
    assert {"80", "443"} <= ports


def test_the_proxy_loads_the_caddyfile_and_balances_both_nodes(services, caddyfile):
    caddy = services["caddy"]
    assert volume_mounts(caddy).get("/etc/caddy/Caddyfile") == "./Caddyfile"
    assert {"/data", "/config"} <= set(volume_mounts(caddy)), "certificates must survive re-creation"
    assert set(depends_on(caddy)) >= set(APP_NODES)
    assert sorted(caddy_upstreams(caddyfile)) == sorted(f"{node}:{APP_PORT}" for node in APP_NODES)
    for node in APP_NODES:
        assert node in environment_of(services[node])["CALLBROKER_ALLOWED_HOSTS"].split(","), (
            "Caddy's health checks send Host: <node>:8000"
        )


def test_the_proxy_uses_the_domain_the_nodes_sign_against(services, caddyfile):
    assert re.search(r"^\{\$CALLBROKER_DOMAIN\}\s*\{", caddyfile, re.MULTILINE)
    assert "CALLBROKER_DOMAIN" in environment_of(services["caddy"])
    for node in APP_NODES:
        public_url = environment_of(services[node])["CALLBROKER_PUBLIC_URL"]
        assert public_url.startswith("https://${CALLBROKER_DOMAIN")


def test_the_proxy_health_checks_liveness_and_hides_internal_endpoints(caddyfile):
    assert re.search(r"^\s*health_uri\s+/healthz\s*$", caddyfile, re.MULTILINE)
    internal = re.search(r"^\s*@internal\s+path\s+(.+)$", caddyfile, re.MULTILINE)
    assert internal and {"/metrics", "/readyz"} <= set(internal.group(1).split())
    assert re.search(r"handle @internal \{\s*respond [^\n]*404", caddyfile)
    assert re.search(r"request_body /carriers/\* \{\s*max_size 64KiB", caddyfile)


def test_static_files_reach_the_proxy(services, caddyfile):
    migrate_static = volume_mounts(services["migrate"])
    data_dir = environment_of(services["migrate"])["CALLBROKER_DATA_DIR"]
    assert migrate_static.get(f"{data_dir}/static") == "static"  # settings: STATIC_ROOT = DATA_DIR / "static"
    assert volume_mounts(services["caddy"]).get("/srv/static") == "static"
    assert re.search(r"handle /static/\* \{\s*root \* /srv\s+file_server", caddyfile)


def test_every_named_volume_is_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source in volume_mounts(service).values():
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_every_interpolated_variable_is_in_the_dot_env_template_of_the_docs(deploy_doc):
    names = set(INTERPOLATION.findall((DEPLOY / "docker-compose.yml").read_text()))
    assert names >= {"CALLBROKER_DOMAIN", "POSTGRES_PASSWORD", "CALLBROKER_SECRET_KEY", "TWILIO_AUTH_TOKEN",
                     "TWILIO_ACCOUNT_TOKENS"}
    for name in sorted(names):
        assert re.search(rf"^\s*{name}=", deploy_doc, re.MULTILINE), f"{name}: not in the docs' deploy/.env"
