"""docker-compose.yml and the Dockerfile name what the app really reads and runs.

Docker is not run here: the file is parsed and its workers' settings are checked against
``config.settings.SETTINGS`` and validated as the worker would at start.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from config.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
WORKERS = {name: service for name, service in SERVICES.items() if "build" in service}
VARIABLES = {spec.variable for spec in SETTINGS}

#: What compose substitutes for ``${VAR:?...}`` / ``${VAR:-default}`` in this test.
SUBSTITUTES = {"SHOP_JWT_SECRET": "a-production-secret-of-more-than-32-chars"}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """Return a service's environment as strings, ``${...}`` replaced as compose would."""
    env = service.get("environment") or {}
    assert isinstance(env, dict), "write environments as mappings"

    def interpolate(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3) or ""
        return SUBSTITUTES.get(name, default)

    return {str(k): re.sub(r"\$\{(\w+)(:[?-]([^}]*))?\}", interpolate, str(v))
            for k, v in env.items()}


def test_there_are_kafka_in_kraft_mode_rabbitmq_and_at_least_two_workers() -> None:
    assert SERVICES["kafka"]["image"].startswith("apache/kafka")
    kafka_env = environment(SERVICES["kafka"])
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert SERVICES["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    assert len(WORKERS) >= 2


def test_every_shop_variable_is_a_setting_the_app_reads() -> None:
    for name, service in SERVICES.items():
        unknown = {k for k in environment(service) if k.startswith("SHOP_")} - VARIABLES
        assert not unknown, f"{name} sets {sorted(unknown)}, which config/settings.py lacks"


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_each_worker_settings_are_valid_for_production(name: str) -> None:
    env = environment(WORKERS[name])
    settings = Settings.from_env(env)
    assert settings.environment == "production"
    assert settings.kafka_compat == ""
    assert settings.topic_replication_factor >= 1


def test_each_worker_has_its_own_data_dir_volume_port_and_canonical_url() -> None:
    envs = {name: environment(service) for name, service in WORKERS.items()}
    for key in ("SHOP_DATADIR", "SHOP_WEB_CANONICAL_URL", "SHOP_WEB_PORT"):
        values = [env[key] for env in envs.values()]
        assert len(set(values)) == len(values), f"{key} is shared: {values}"
    volumes = [tuple(str(v).split(":")[0] for v in service["volumes"])
               for service in WORKERS.values()]
    assert len({v for vs in volumes for v in vs}) == sum(len(vs) for vs in volumes)
    for name, env in envs.items():
        mounts = [str(v).split(":")[1] for v in WORKERS[name]["volumes"]]
        assert any(env["SHOP_DATADIR"].startswith(mount) for mount in mounts), name
        canonical = urlsplit(env["SHOP_WEB_CANONICAL_URL"])
        assert canonical.hostname == name, "other workers reach it by its service name"
        assert canonical.port == int(env["SHOP_WEB_PORT"])


def test_workers_reach_kafka_and_rabbitmq_by_their_service_names() -> None:
    for name, service in WORKERS.items():
        env = environment(service)
        kafka_hosts = [urlsplit(f"kafka://{h}").hostname
                       for h in env["SHOP_KAFKA_URL"].removeprefix("kafka://").split(";")]
        assert kafka_hosts == ["kafka"], name
        assert urlsplit(env["SHOP_RABBIT_URL"]).hostname == "rabbitmq", name
        assert {"kafka", "rabbitmq"} <= set(service["depends_on"]), name


def test_the_dockerfile_runs_the_worker() -> None:
    lines = (ROOT / "Dockerfile").read_text("utf-8").splitlines()
    assert any(re.match(r"FROM python:3\.11-slim\b", line) for line in lines)
    cmd = [line for line in lines if line.startswith("CMD ")]
    assert len(cmd) == 1
    command = yaml.safe_load(cmd[0].removeprefix("CMD "))  # the JSON (exec) form
    assert isinstance(command, list), "use the exec form: signals reach the worker"
    assert shlex.join(command).startswith("faust -A app worker")
