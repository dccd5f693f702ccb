"""The deployment files, checked without Docker (no engine runs here): docker-compose.yml, Dockerfile, .dockerignore,
deploy/loupe.env.example and deploy/healthcheck.py must agree with each other and with the code they run.

Why these checks and not a `docker compose up`: what breaks deployments in practice is drift — an env var the code
stopped reading, a volume typo that silently creates an empty one, a healthcheck calling a binary the image lacks,
a CLI flag that was renamed. Each test pins one of those against the source of truth (the code, pyproject, README).
The Qdrant server code path runs for real through qdrant-client's local mode, with the cluster options the compose
file's cluster profile is meant to be used with.
"""

from __future__ import annotations

import ast
import hashlib
import http.server
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / "loupe.env.example"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
PACKAGES = ("indexer", "models", "search", "ui")
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# What bash's /dev/tcp healthcheck may call in the official Qdrant image (Debian slim: bash, coreutils, grep).
QDRANT_IMAGE_TOOLS = {"exec", "printf", "head", "grep", "cat", "echo", "timeout", "test", "true", "false"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _apps(services: dict) -> dict[str, dict]:
    """Services running Loupe's own image (built from the Dockerfile)."""
    return {name: s for name, s in services.items() if "build" in s}


def _qdrant_nodes(services: dict) -> dict[str, dict]:
    return {name: s for name, s in services.items() if "qdrant" in str(s.get("image", "")).lower()}


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def _mounts(service: dict) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume entry; an interpolated source reads as `${NAME}`."""
    out = []
    for entry in service.get("volumes", []):
        m = INTERPOLATION.match(entry)
        parts = [f"${{{m.group(1)}}}", *entry[m.end():].lstrip(":").split(":")] if m else entry.split(":")
        source, target, mode = (parts + ["rw"])[:3]
        out.append((source, target, mode))
    return out


def _is_named_volume(source: str) -> bool:
    return not source.startswith(("/", ".", "~", "$"))


def _resolve_default(value: str) -> str:
    """A compose value with `${VAR:-default}` resolved to its default (for values that are plain otherwise)."""
    return INTERPOLATION.sub(lambda m: m.group(3) if m.group(2) in ("-", ":-") else m.group(0), value)


def _dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), split into stages."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM ") and stages[-1] and any(s.upper().startswith("FROM ") for s in stages[-1]):
            stages.append([])
        stages[-1].append(line)
    return stages


def _env_reads() -> set[str]:
    """Every environment variable name the packages read: os.environ.get/[]/getenv with a literal or a module-level
    string constant (models.home's `ENV_HOME = "LOUPE_HOME"`)."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            constants = {
                t.id: node.value.value
                for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                for t in node.targets if isinstance(t, ast.Name)
            }

            for node in ast.walk(tree):
                target = None
                if isinstance(node, ast.Call) and node.args:
                    func = ast.unparse(node.func)
                    if func in ("os.environ.get", "os.getenv", "environ.get", "getenv", "os.environ.setdefault"):
                        target = node.args[0]
                elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
                    target = node.slice
                if isinstance(target, ast.Constant) and isinstance(target.value, str):
                    names.add(target.value)
                elif isinstance(target, ast.Name) and target.id in constants:
                    names.add(constants[target.id])
    return names


# --- docker-compose.yml ------------------------------------------------------------------------------------------


def test_compose_parses_with_the_services_the_issue_names(services) -> None:
    assert {"qdrant", "postgres", "ui"} <= set(services)
    indexers = [n for n, s in services.items() if _command(s)[:3] == ["python", "-m", "indexer"]]
    assert "indexer" in indexers, "the CPU indexer service is called `indexer`"


def test_every_substituted_variable_is_in_the_env_example_or_has_a_default(env_example) -> None:
    """A `${VAR:?}` the example does not mention is a deployment that fails with a message users cannot act on."""
    used = {}
    for m in INTERPOLATION.finditer(COMPOSE_FILE.read_text()):
        used.setdefault(m.group(1), set()).add(m.group(2) or "")
    for name, operators in used.items():
        if operators - {"-", ":-"}:  # required or bare
            assert name in env_example, f"${{{name}}} is required by docker-compose.yml but not in {ENV_EXAMPLE.name}"
    unused = set(env_example) - set(used) - {"COMPOSE_PROFILES"}
    assert not unused, f"{ENV_EXAMPLE.name} sets variables docker-compose.yml never uses: {sorted(unused)}"


def test_secrets_come_from_the_env_file_and_none_ships_with_a_value(services, env_example) -> None:
    qdrant_key = _env(services["qdrant"])["QDRANT__SERVICE__API_KEY"]
    (var,) = {m.group(1) for m in INTERPOLATION.finditer(qdrant_key)}
    assert INTERPOLATION.fullmatch(qdrant_key).group(2) == ":?", "the API key must be required, never defaulted"
    for name, app in _apps(services).items():
        assert var in _env(app)["LOUPE_QDRANT_API_KEY"], f"{name} must use the same Qdrant API key"
        assert "${POSTGRES_PASSWORD" in _env(app)["LOUPE_DB_URL"]
    assert "${POSTGRES_PASSWORD" in _env(services["postgres"])["POSTGRES_PASSWORD"]
    for secret in (var, "POSTGRES_PASSWORD"):
        assert env_example[secret] == "", f"{ENV_EXAMPLE.name} must not ship a value for {secret}"


def test_app_env_vars_are_ones_the_code_reads(services) -> None:
    read = _env_reads()
    assert {"LOUPE_HOME", "LOUPE_DB_URL", "LOUPE_QDRANT_URL", "LOUPE_QDRANT_API_KEY"} <= read  # the scanner works
    for name, app in _apps(services).items():
        unread = set(_env(app)) - read
        assert not unread, f"{name} sets {sorted(unread)}, which no code in {PACKAGES} reads"


def test_app_urls_point_at_the_compose_services(services) -> None:
    for name, app in _apps(services).items():
        env = _env(app)
        assert re.fullmatch(r"http://qdrant:6333", env["LOUPE_QDRANT_URL"]), name
        assert re.match(r"postgresql\+psycopg://loupe:\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432/loupe$",
                        env["LOUPE_DB_URL"]), name


def test_cluster_profile_runs_three_qdrant_nodes_in_distributed_mode(services) -> None:
    nodes = _qdrant_nodes(services)
    in_cluster = {n: s for n, s in nodes.items() if "profiles" not in s or "cluster" in s["profiles"]}
    assert len(in_cluster) == 3, f"the cluster profile must run three Qdrant nodes, got {sorted(in_cluster)}"
    seeds = []
    for name, node in in_cluster.items():
        env, command = _env(node), _command(node)
        assert env["QDRANT__CLUSTER__ENABLED"] == "true" and env["QDRANT__CLUSTER__P2P__PORT"] == "6335", name
        assert command[0] == "./qdrant", f"{name}: the official image's binary is ./qdrant in its workdir"
        args = dict(zip(command[1::2], command[2::2], strict=True))
        assert args.get("--uri") == f"http://{name}:6335", f"{name} must announce itself by its service name"
        if "--bootstrap" in args:
            seed = re.fullmatch(r"http://([a-z0-9-]+):6335", args["--bootstrap"]).group(1)
            assert seed in in_cluster and "profiles" not in services[seed], f"{name} bootstraps from {seed}"
            assert node["depends_on"][seed]["condition"] == "service_healthy", name
        else:
            seeds.append(name)
    assert seeds == ["qdrant"], "exactly one node (the always-on `qdrant`) starts the cluster"
    storages = [src for node in in_cluster.values() for src, tgt, _ in _mounts(node) if tgt == "/qdrant/storage"]
    assert len(set(storages)) == 3, "each node needs its own storage volume"


def test_gpu_and_cpu_variants(services) -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=", dockerfile, re.M) and re.search(r"^ARG TORCH_INDEX=", dockerfile, re.M)
    gpu = [s for s in services.values() if "gpu" in s.get("profiles", [])]
    cpu = [s for s in services.values() if "cpu" in s.get("profiles", [])]
    assert len(gpu) == 1 and len(cpu) == 1, "one indexer per variant, each in its own profile (never both running)"
    (gpu,), (cpu,) = gpu, cpu
    assert _command(gpu) == _command(cpu)
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    args = gpu["build"]["args"]
    assert "cuda" in _resolve_default(args["BASE_IMAGE"]) and "/whl/cu" in _resolve_default(args["TORCH_INDEX"])
    assert "deploy" not in cpu and not cpu["build"].get("args")
    assert gpu["image"] != cpu["image"], "the two variants must not overwrite each other's image tag"


def test_healthchecks_dependencies_and_restart_policies(services) -> None:
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name} has no restart policy"
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on undefined service {dep}"
            assert how["condition"] == "service_healthy", f"{name} → {dep}"
            if "profiles" in services[dep] and set(services[dep]["profiles"]) - set(service.get("profiles", [])):
                assert how.get("required") is False, f"{name} → {dep}: a profile-only dependency must be optional"
    for name, app in _apps(services).items():
        deps = app["depends_on"]
        assert {"qdrant", "postgres"} <= set(deps) and all(d.get("required", True) for d in
                                                          (deps["qdrant"], deps["postgres"])), name


def test_healthcheck_commands_exist_in_the_images(services) -> None:
    final = _dockerfile_stages()[-1]
    copies = [line.split()[1:] for line in final if line.upper().startswith("COPY ") and "--from" not in line]
    copied = {dst: src for *srcs, dst in copies for src in srcs}
    assert any(re.match(r"ENV PATH=/opt/venv/bin", line) for line in final), "python must be the venv's on PATH"
    for name, app in _apps(services).items():
        test = app["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "python", f"{name}: the image's tools are python and the script"
        script = test[2]
        assert script in copied, f"{name}: {script} is not copied into the image"
        assert (ROOT / copied[script]).is_file()
    for name, node in _qdrant_nodes(services).items():
        test = node["healthcheck"]["test"]
        assert test[:3] == ["CMD", "bash", "-c"], f"{name}: the official Qdrant image has bash, not curl"
        words = {w for cmd in re.split(r"&&|\|\||\|", test[3]) for w in cmd.split()[:1]}
        assert words <= QDRANT_IMAGE_TOOLS, f"{name}: {sorted(words - QDRANT_IMAGE_TOOLS)} may not be in the image"
        assert "/dev/tcp/127.0.0.1/6333" in test[3] and "/readyz" in test[3]
        assert "$$QDRANT__SERVICE__API_KEY" in test[3], "compose must leave $VAR to the container's shell"
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]


def test_volumes_are_declared_and_used(compose, services) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for source, target, mode in _mounts(service):
            assert target.startswith("/"), f"{name}: {target}"
            assert mode in ("ro", "rw"), f"{name}: {source}:{target}:{mode}"
            if _is_named_volume(source):
                assert source in declared, f"{name} mounts undeclared volume {source!r} (it would be created empty)"
                used.add(source)
            else:
                assert source.startswith("${"), f"{name}: host paths come from the env file, got {source}"
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"


def test_photos_mounted_read_only_and_entry_commands(services) -> None:
    for name, app in _apps(services).items():
        photos = [(s, m) for s, t, m in _mounts(app) if t == "/photos"]
        assert photos == [("${LOUPE_PHOTOS}", "ro")], f"{name}: the photo folder is mounted read-only, once"
        writable = [t for s, t, m in _mounts(app) if not _is_named_volume(s) and m != "ro"]
        assert not writable, f"{name}: host folders are mounted read-only, got {writable}"
        command = _command(app)
        if command[:3] == ["python", "-m", "indexer"]:
            assert command[3:5] == ["/photos", "--watch"], name
        else:
            assert command == ["python", "-m", "ui", "--host", "0.0.0.0", "--port", "8501"], name


def test_data_home_model_cache_and_thumbnails_are_where_the_code_looks(services) -> None:
    from indexer.settings import IndexerSettings
    from models.home import model_cache

    dockerfile_home = re.search(r"LOUPE_HOME=(\S+)", DOCKERFILE.read_text()).group(1)
    caches, homes = set(), set()
    for name, app in _apps(services).items():
        home = Path(_env(app)["LOUPE_HOME"])
        assert str(home) == dockerfile_home, name
        mounts = {t: (s, m) for s, t, m in _mounts(app)}
        assert str(home) in mounts and _is_named_volume(mounts[str(home)][0]), f"{name}: data home not on a volume"
        homes.add(mounts[str(home)][0])
        cache = mounts[str(model_cache(home))]
        assert cache[1] == "rw", f"{name}: the model cache is written on first use"
        caches.add(cache[0])
        thumbs = IndexerSettings(home=home).thumbnails_dir
        assert str(thumbs) in mounts, f"{name}: thumbnails must be shared between the indexer and the UI"
    assert len(caches) == 1, "one model cache shared by every Loupe service (weights downloaded once)"
    assert len(homes) == len(_apps(services)) - 1, "indexer variants share a home; the UI has its own (own lock/API)"


def test_only_loopback_ports_are_published(services) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    (ui_port,) = services["ui"]["ports"]
    assert ui_port.rsplit(":", 1)[1] == _command(services["ui"])[-1] == "8501"


def test_env_example_indexer_flags_exist_in_the_cli(env_example) -> None:
    """The cluster recipe in the env example must parse with the real indexer CLI (flags get renamed)."""
    from indexer.cli import build_parser, settings_from

    recipe = re.search(r"#\s*LOUPE_INDEXER_ARGS=(.+)", ENV_EXAMPLE.read_text()).group(1)
    args = build_parser().parse_args(["/photos", "--watch", *shlex.split(recipe)])
    settings = settings_from(args)
    assert (settings.shard_number, settings.replication_factor, settings.write_consistency_factor) == (6, 2, 1)
    assert settings.watch and settings.roots == (Path("/photos"),)


def test_qdrant_image_is_one_the_installed_client_supports(services, env_example) -> None:
    """qdrant-client is tested against the latest three Qdrant minor versions; a stale pin drifts out of that."""
    from importlib.metadata import version

    client = tuple(int(x) for x in version("qdrant-client").split(".")[:2])
    for image in (_resolve_default(services["qdrant"]["image"]), env_example["QDRANT_IMAGE"]):
        server = tuple(int(x) for x in re.search(r":v(\d+)\.(\d+)", image).groups())
        assert server[0] == client[0] and 0 <= client[1] - server[1] <= 2, f"{image} vs qdrant-client {client}"
    assert _resolve_default(services["qdrant"]["image"]) == env_example["QDRANT_IMAGE"]


# --- Dockerfile and .dockerignore --------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_and_installs_the_project() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: build tools and caches stay out of the runtime image"
    final = stages[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime stage must run as a non-root USER"
    assert any(line.startswith("COPY --from=") for line in final), "the runtime stage copies the built venv"
    runs = " ".join(line for stage in stages for line in stage if line.upper().startswith("RUN "))
    installs = re.findall(r"pip install (?:--\S+ )*(\"?\.(?:\[[^\]]*\])?\"?)", runs)
    assert installs == ['".[postgres]"'], f"the project is installed once, as .[postgres]; got {installs}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "postgres" in pyproject["project"]["optional-dependencies"]
    copied = " ".join(line for stage in stages for line in stage if line.upper().startswith("COPY "))
    for package in [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]:
        assert re.search(rf"\b{package}\b", copied), f"package {package} is not copied into the build"
    assert "pyproject.toml" in copied and pyproject["project"]["readme"] in copied


def test_dockerfile_bakes_in_no_weights() -> None:
    stages = _dockerfile_stages()
    runs = [line for stage in stages for line in stage if line.upper().startswith("RUN ")]
    for line in runs:
        assert not re.search(r"python3? -m (models|indexer|ui)|huggingface-cli|hf download|wget|curl ", line), line
    copies = [line for stage in stages for line in stage if line.upper().startswith("COPY ")]
    for line in copies:
        assert not re.search(r"\.(npz|safetensors|pt|pth|bin|ckpt)\b", line), line


def test_dockerfile_matches_readme_install() -> None:
    """The image installs the project the way README tells users to (the project root, with declared extras),
    except that an image wants a regular install, not an editable one, plus the PostgreSQL driver."""
    pattern = r"pip install((?: -{1,2}[\w-]+)*) [\"']?\.(\[[^\]]*\])?[\"']?(?=\s|$|&)"
    readme = re.findall(pattern, (ROOT / "README.md").read_text(), re.M)
    if not readme:
        pytest.skip("README.md has no install command yet")
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for_use = [extras for _, extras in readme if "test" not in extras and "dev" not in extras]
    assert for_use, "README documents installing the project for use, not only for tests"
    for _, extras in readme:
        assert set(re.findall(r"[\w-]+", extras)) <= declared, f"README installs undeclared extras {extras}"
    image = re.findall(pattern, DOCKERFILE.read_text(), re.M)
    assert len(image) == 1, "the Dockerfile installs the project once"
    (options, extras), = image
    assert not re.search(r"-e\b|--editable", options), "an image installs the project, not a link to /src"
    assert set(re.findall(r"[\w-]+", extras)) == {"postgres"}
    assert {e for e in re.findall(r"[\w-]+", " ".join(for_use))} <= {"postgres"}, "README's use install has extras"


def test_dockerignore_keeps_secrets_and_environments_out_but_not_what_the_build_copies() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for needed in (".git", ".venv", "scratch", "deploy/*.env"):
        assert needed in patterns, f".dockerignore must exclude {needed}"
    sources = [src for stage in _dockerfile_stages() for line in stage
               if line.upper().startswith("COPY ") and "--from" not in line for src in line.split()[1:-1]]
    for src in sources:
        for pattern in patterns:
            assert not fnmatch(src, pattern), f"the build copies {src}, which .dockerignore drops ({pattern})"
    assert not fnmatch("deploy/loupe.env.example", "deploy/*.env")


# --- deploy/healthcheck.py, run for real -------------------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def health_server() -> Iterator[tuple[http.server.HTTPServer, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def _probe(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOUPE_HOME": str(home)} if home else dict(os.environ)
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, env=env,
                          timeout=30)


def test_healthcheck_url_mode(health_server) -> None:
    server, handler = health_server
    url = f"http://127.0.0.1:{server.server_port}/_stcore/health"
    assert _probe(url).returncode == 0
    handler.status = 503
    result = _probe(url)
    assert result.returncode == 1 and "unhealthy" in result.stdout


def test_healthcheck_owner_mode(health_server, tmp_path: Path) -> None:
    server, _ = health_server
    result = _probe("owner", home=tmp_path)
    assert result.returncode == 1 and "owner.json" in result.stdout
    owner = {"pid": os.getpid(), "host": "127.0.0.1", "port": server.server_port, "started": 0, "purpose": "t"}
    (tmp_path / "owner.json").write_text(json.dumps(owner))
    assert _probe("owner", home=tmp_path).returncode == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "owner.json").write_text(json.dumps({**owner, "pid": dead.pid}))
    result = _probe("owner", home=tmp_path)
    assert result.returncode == 1 and "gone" in result.stdout
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    (tmp_path / "owner.json").write_text(json.dumps({**owner, "port": closed}))
    assert _probe("owner", home=tmp_path).returncode == 1


# --- the Qdrant server code path, as the compose file configures it ----------------------------------------------


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
def test_server_store_with_cluster_options_as_compose_configures_it(tmp_path: Path, monkeypatch) -> None:
    """Settings from the env vars compose sets + the cluster flags from the env example → open_vector_store (as
    IndexerService calls it) → ServerVectorStore.connect; qdrant-client's local mode stands in for the cluster, and
    the test checks what reached the client: URL, API key and the collection's sharding/replication parameters."""
    from qdrant_client import QdrantClient

    import indexer.stores.vectors_server as vectors_server
    from indexer.cli import build_parser, settings_from
    from indexer.stores.factory import open_vector_store
    from indexer.stores.vectors import VectorFilter, VectorPoint, build_payload, point_id

    connects: list[dict] = []
    creates: list[dict] = []

    def fake_client(**kwargs):
        connects.append(kwargs)
        client = QdrantClient(location=":memory:")
        original = client.create_collection

        def create_collection(name, **options):
            creates.append(options)
            return original(name, **options)

        client.create_collection = create_collection
        return client

    monkeypatch.setattr(vectors_server, "QdrantClient", fake_client)
    monkeypatch.setenv("LOUPE_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("LOUPE_QDRANT_API_KEY", "secret-from-env-file")
    args = build_parser().parse_args([str(tmp_path), "--home", str(tmp_path / "home"), "--shard-number", "2",
                                      "--replication-factor", "2", "--write-consistency-factor", "1"])
    settings = settings_from(args)
    store = open_vector_store(settings.home, settings.qdrant_url, settings.qdrant_api_key,
                              shard_number=settings.shard_number, replication_factor=settings.replication_factor,
                              write_consistency_factor=settings.write_consistency_factor)
    try:
        assert isinstance(store, vectors_server.ServerVectorStore)
        assert connects[0]["url"] == "http://qdrant:6333" and connects[0]["api_key"] == "secret-from-env-file"
        store.ensure_collection("lit-test", 8)  # local mode may warn that payload indexes have no effect there
        assert creates and {k: creates[0][k] for k in ("shard_number", "replication_factor",
                                                        "write_consistency_factor")} == {
            "shard_number": 2, "replication_factor": 2, "write_consistency_factor": 1}
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((20, 8)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        points = []
        for i, vector in enumerate(vectors):
            digest = hashlib.sha256(str(i).encode()).hexdigest()
            folder = "/photos/a" if i % 2 else "/photos/b"
            points.append(VectorPoint(point_id(digest), vector, build_payload(digest, [f"{folder}/{i}.jpg"], i, 4, 3)))
        store.upsert("lit-test", points)
        assert store.count("lit-test") == 20
        hits = store.query("lit-test", vectors[7], limit=3)
        assert hits[0].id == points[7].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
        in_a = store.query("lit-test", vectors[4], limit=20, filter=VectorFilter(folder="/photos/a"))
        assert len(in_a) == 10 and all(h.payload["folders"][-1] == "/photos/a" for h in in_a)
        store.ensure_collection("lit-test", 8)  # idempotent: no second create
        assert len(creates) == 1
    finally:
        store.close()

