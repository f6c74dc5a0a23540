"""The deployment in deploy/: Compose accepts the file, every GBG_* name it sets is a real setting,
the bot environment builds valid (fail-closed) settings, and the Kubernetes manifests are sane.

Needs the `docker-compose` command (Debian: `apt-get install docker-compose`); no Docker engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gbg.settings import ProviderSettings, Settings
from tests.helpers import REPO

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
NGINX = DEPLOY / "nginx.conf"
DOCKERFILE = DEPLOY / "Dockerfile"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# Variables the UI reads itself (not part of gbg.settings.Settings).
UI_SOURCES = (REPO / "ui" / "app.py", REPO / "gbg" / "cli.py")


# --- helpers ------------------------------------------------------------------------------------


def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


def compose_doc() -> dict[str, Any]:
    doc = yaml.safe_load(compose_text())  # resolves anchors and << merge keys
    assert isinstance(doc, dict)
    return doc


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style ${...} substitution (enough for this file: defaults and required vars)."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if name in env and (env[name] != "" or op in ("-", "?")):
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise KeyError(f"{name} is required: {arg}")
        return ""

    return _INTERP.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    env = {"POSTGRES_PASSWORD": "test-password"} if env is None else env
    return {str(k): interpolate(str(v), env) for k, v in raw.items()}


def interpolation_vars() -> set[str]:
    return {m.group(1) for m in _INTERP.finditer(compose_text())}


def compose_exe() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "`docker-compose` is not on PATH: install it (`apt-get install docker-compose`; CI "
            "installs it) to validate deploy/docker-compose.yml"
        )
    return exe


def run_compose(*args: str, extra_env: dict[str, str], env_file: Path | None = None
                ) -> subprocess.CompletedProcess[str]:
    # Only what the test sets: nothing from the caller's shell may satisfy ${...} by accident.
    env = {k: v for k, v in os.environ.items() if k not in interpolation_vars()}
    env.update(extra_env)
    cmd = [compose_exe()]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    cmd += ["-f", str(COMPOSE), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def gbg_names(node: Any) -> Iterator[str]:
    """Every mapping key or NAME=value list entry that looks like a GBG_* variable."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str) and k.startswith("GBG_"):
                yield k
            if k == "name" and isinstance(v, str) and v.startswith("GBG_"):
                yield v  # Kubernetes env: [{name: GBG_..., value: ...}]
            yield from gbg_names(v)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str) and re.match(r"GBG_[A-Z0-9_]+=", item):
                yield item.split("=", 1)[0]
            else:
                yield from gbg_names(item)


def _model_in(annotation: Any) -> Any:
    """The pydantic model or dict type inside an annotation such as `X | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is dict:
        return annotation
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def setting_exists(var: str) -> bool:
    """GBG_X -> Settings.x; GBG_X__Y -> Settings.x (a model) has field y; deeper levels too."""
    parts = var.removeprefix("GBG_").lower().split("__")
    model: Any = Settings
    for i, part in enumerate(parts):
        if typing.get_origin(model) is dict:  # a dict field: any key, then its value type
            model = _model_in(typing.get_args(model)[1])
            if model is None:
                return i == len(parts) - 1
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return False
        if part not in model.model_fields:
            return False
        if i < len(parts) - 1:
            model = _model_in(model.model_fields[part].annotation)
            if model is None:
                return False
    return True


def ui_reads(var: str) -> bool:
    return any(var in p.read_text(encoding="utf-8") for p in UI_SOURCES if p.is_file())


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.y*ml")):
        with path.open(encoding="utf-8") as fh:
            docs += [(path, d) for d in yaml.safe_load_all(fh) if d is not None]
    return docs


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in k8s_docs() if d.get("kind") == kind]


def bot_deployment() -> dict[str, Any]:
    deps = [d for d in k8s_kind("Deployment") if "bot" in d["metadata"]["name"]]
    assert len(deps) == 1, "expected exactly one bot Deployment in deploy/k8s"
    return deps[0]


# --- (a) docker-compose accepts the file --------------------------------------------------------


def test_compose_config_is_valid() -> None:
    r = run_compose("config", "-q", extra_env={"POSTGRES_PASSWORD": "x"})
    assert r.returncode == 0, f"docker-compose config -q failed:\n{r.stderr}"
    assert "WARNING" not in r.stderr, r.stderr  # e.g. a ${VAR} without default and unset


def test_compose_refuses_to_start_without_postgres_password(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    r = run_compose("config", "-q", extra_env={}, env_file=empty)
    assert r.returncode != 0
    assert "POSTGRES_PASSWORD" in r.stderr


def test_compose_config_output_keeps_gpu_reservation() -> None:
    r = run_compose("config", extra_env={"POSTGRES_PASSWORD": "x"})
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)
    devices = resolved["services"]["ollama"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


# --- (b) the compose file's content -------------------------------------------------------------


def test_ollama_reserves_a_gpu() -> None:
    ollama = compose_doc()["services"]["ollama"]
    assert str(ollama["image"]).startswith("ollama/ollama")
    devices = ollama["deploy"]["resources"]["reservations"]["devices"]
    gpu = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
    assert gpu, "ollama needs deploy.resources.reservations.devices with an nvidia GPU"
    count = gpu[0].get("count")
    assert count == "all" or int(count or 0) >= 1 or gpu[0].get("device_ids")


def test_chroma_matches_the_client_library() -> None:
    import chromadb

    chroma = compose_doc()["services"]["chroma"]
    assert chroma["image"] == f"chromadb/chroma:{chromadb.__version__}"
    assert chroma.get("healthcheck", {}).get("test"), "chroma needs a healthcheck"
    assert any(str(v).endswith(":/data") for v in chroma["volumes"]), "chroma data must persist"


def test_bot_is_replicated_behind_the_load_balancer() -> None:
    services = compose_doc()["services"]
    bot = services["bot"]
    assert int(bot.get("deploy", {}).get("replicas", 1)) >= 2
    assert "ports" not in bot and "container_name" not in bot, "bot must stay scalable"
    assert services["ui"]["environment"]["GBG_UI__BOT_URL"] == "http://lb:8080"
    conf = NGINX.read_text(encoding="utf-8")
    assert re.search(r"server\s+bot:8000\b", conf)
    chat = conf[conf.index("location /v1/chat"):]
    assert re.search(r"proxy_buffering\s+off;", chat), "SSE on /v1/chat must not be buffered"
    assert re.search(r"proxy_read_timeout\s+(\d+)s;", chat)
    assert "X-Forwarded-For" in conf
    assert any("nginx.conf" in str(v) for v in services["lb"]["volumes"])


def test_services_depend_on_healthy_state() -> None:
    services = compose_doc()["services"]
    for svc, needs in {"bot": ("chroma", "postgres", "redis"), "ingest": ("chroma",)}.items():
        deps = services[svc]["depends_on"]
        for need in needs:
            assert deps[need]["condition"] == "service_healthy", f"{svc} -> {need}"
            assert services[need].get("healthcheck", {}).get("test"), f"{need} has no healthcheck"
    ingest = services["ingest"]
    assert ingest["command"][:2] == ["gbg", "ingest"]
    assert any(str(v).endswith(":ro") and "corpora" in str(v) for v in ingest["volumes"])
    assert "${POSTGRES_PASSWORD:?" in compose_text()


def test_every_gbg_variable_is_a_setting() -> None:
    names = set(gbg_names(compose_doc()))
    for _, doc in k8s_docs():
        names |= set(gbg_names(doc))
    assert names, "no GBG_* variables found"
    unknown = sorted(n for n in names if not setting_exists(n)
                     and not (n.startswith("GBG_UI__") and ui_reads(n)))
    assert not unknown, f"not settings of gbg.settings.Settings: {unknown}"


def test_bot_environment_builds_fail_closed_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = compose_doc()
    services = doc["services"]
    env = environment(services["bot"])
    for k in list(os.environ):
        if k.startswith("GBG_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings(_env_file=None)

    # Every key of every provider is a real field (a misspelt "clearance" is silently ignored).
    for name, cfg in json.loads(env["GBG_LLM__PROVIDERS"]).items():
        extra = set(cfg) - set(ProviderSettings.model_fields)
        assert not extra, f"provider {name!r}: unknown keys {sorted(extra)}"
    assert set(s.llm.preference) <= set(s.llm.providers)
    sensitive = [n for n, p in s.llm.providers.items() if p.cleared_for == "sensitive"]
    assert sensitive and all(s.llm.providers[n].where == "local" for n in sensitive)
    assert s.llm.providers["ollama"].base_url == "http://ollama:11434"

    assert s.chroma.host == "chroma" and s.chroma.port == 8000
    assert s.audit.url and s.audit.url.startswith("postgresql+psycopg://")
    assert s.audit.url.endswith("@postgres:5432/gbg")
    assert s.bot.rate_storage.startswith("redis://redis:")
    assert services["redis"]["image"].startswith("redis:7")
    # Trusted for X-Forwarded-For: exactly the load balancer and the UI (fixed addresses).
    trusted = {interpolate(services[n]["networks"]["default"]["ipv4_address"], {})
               for n in ("lb", "ui")}
    assert set(s.bot.forwarded_allow_ips.split(",")) == trusted
    assert s.bot.forwarded_allow_ips != "*"

    grace = services["bot"]["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > s.bot.shutdown_timeout_s
    cpus = float(services["bot"]["deploy"]["resources"]["limits"]["cpus"])
    assert s.bot.workers <= cpus
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["ANONYMIZED_TELEMETRY"] == "False"


def test_dockerfile_basics() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert re.search(r"^USER (?!root|0\b)", text, re.M), "the image must run as a non-root user"
    assert "OMP_NUM_THREADS=1" in text
    assert re.search(r"^EXPOSE 8000 8501$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*", text, re.M) and "/healthz" in text
    assert re.search(r'^CMD \["gbg", "serve", "--host", "0.0.0.0", "--port", "8000"\]', text, re.M)
    assert "pip install" in text and "psycopg" in text


# --- (c) Kubernetes manifests -------------------------------------------------------------------


def test_k8s_manifests_parse() -> None:
    docs = k8s_docs()
    assert docs, "deploy/k8s holds no manifests"
    for path, d in docs:
        assert d.get("apiVersion") and d.get("kind"), path.name
        if d["kind"] != "Kustomization":
            assert d.get("metadata", {}).get("name"), path.name
    kust = k8s_kind("Kustomization")
    for k in kust:
        for res in k.get("resources", []):
            assert (K8S / res).is_file(), f"kustomization lists missing {res}"


def test_k8s_bot_deployment_probes_and_shutdown() -> None:
    dep = bot_deployment()
    assert dep["spec"]["replicas"] >= 2
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"][
        "labels"].items()
    (c,) = [c for c in pod["containers"] if c["name"] == "bot"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True

    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    config = {}
    for cm in k8s_kind("ConfigMap"):
        config.update(cm.get("data", {}))
    shutdown = float(config.get("GBG_BOT__SHUTDOWN_TIMEOUT_S", 10))
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + shutdown
    workers = int(config.get("GBG_BOT__WORKERS", 1))
    assert float(c["resources"]["requests"]["cpu"]) >= workers
    assert config.get("OMP_NUM_THREADS") == "1"
    assert config.get("GBG_BOT__FORWARDED_ALLOW_IPS") not in (None, "*")


def test_k8s_service_and_autoscaler_target_the_bot() -> None:
    dep = bot_deployment()
    labels = dep["spec"]["template"]["metadata"]["labels"]
    services = [s for s in k8s_kind("Service") if s["spec"]["selector"].items() <= labels.items()]
    assert services, "no Service selects the bot pods"
    (hpa,) = k8s_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]


def test_client_addresses_survive_the_balancer_and_the_ui_listens_outside() -> None:
    """nginx appends to X-Forwarded-For (so the UI's users keep their own addresses), and the UI
    container listens on every interface (a --server.address of 127.0.0.1 would be dead)."""
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    headers = [ln.split("#")[0].strip() for ln in conf.splitlines()
               if "X-Forwarded-For" in ln.split("#")[0]]
    assert headers and all(h.endswith("$proxy_add_x_forwarded_for;") for h in headers), headers
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    ui = compose["services"]["ui"]
    cmd = ui["command"]
    assert cmd[:2] == ["gbg", "ui"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
