"""deploy/: the manifests parse, render and say what the operations docs promise.

Nothing here runs a container or a cluster (the machine that built these has no Docker
engine and no cluster); these are static checks. `kubectl kustomize` must be on PATH:
without it the render test fails rather than skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vault.config import parse_networks
from vault.observability.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])

# The deletion-guarantee gauges (workers/monitor.py) the erasure alerts are built on.
ERASURE_ALERT_METRICS = {
    "datavault_erasures_overdue",
    "datavault_erasure_oldest_open_age_seconds",
    "datavault_worker_job_lag_seconds",
    "datavault_ledger_lag_seconds",
    "datavault_erasures_rate_braked",
}


def exported_metric_names() -> set[str]:
    """Every series name the vault's registry can export, with prometheus-client suffixes."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def referenced_metrics(text: str) -> set[str]:
    return set(re.findall(r"\bdatavault_[a-z0-9_]+", text))


# --- every YAML file -------------------------------------------------------------------


def test_the_expected_files_exist() -> None:
    for name in (
        "Dockerfile",
        "compose.yaml",
        "compose.env.example",
        "k8s/kustomization.yaml",
        "k8s/secret.example.yaml",
        "prometheus/alerts.yaml",
        "prometheus/prometheus.yml",
        "grafana/datavault.json",
        "README.md",
    ):
        assert (DEPLOY / name).is_file(), name


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert documents, f"{path} holds no YAML document"


# --- kustomize -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is not on PATH: `kubectl kustomize deploy/k8s` cannot be checked. "
            "Install the kubectl client (no cluster needed) and run again."
        )
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def config_value(objects: list[dict[str, Any]], key: str) -> str:
    (config,) = of_kind(objects, "ConfigMap").values()
    value: str = config["data"][key]
    return value


def test_kustomize_renders_api_and_worker(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    assert set(deployments) == {"api", "worker"}
    assert deployments["api"]["spec"]["replicas"] == 2
    assert deployments["api"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["api"]
    assert deployments["worker"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount", "Job"):
        assert of_kind(rendered, kind), f"no {kind} rendered"
    (job,) = of_kind(rendered, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][0] == "migrate"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_deployment_probes_and_security(rendered: list[dict[str, Any]], name: str) -> None:
    pod = of_kind(rendered, "Deployment")[name]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    drain = float(config_value(rendered, "DATAVAULT_DRAIN_SECONDS"))
    assert pod["terminationGracePeriodSeconds"] > drain
    tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for container in pod["containers"]:
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get("/tmp") in tmp_volumes
        resources = container["resources"]
        assert resources["requests"] and resources["limits"]
        secret_refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert secret_refs["DATABASE_URL"] == "datavault-secrets"
        assert secret_refs["DATAVAULT_ROOT_KEY"] == "datavault-secrets"


def test_no_secret_values_in_the_render(rendered: list[dict[str, Any]]) -> None:
    for secret in of_kind(rendered, "Secret").values():
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]
    (config,) = of_kind(rendered, "ConfigMap").values()
    for key in config["data"]:
        assert key not in {"DATABASE_URL", "DATAVAULT_ROOT_KEY", "AWS_SECRET_ACCESS_KEY"}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"]
    assert "secretGenerator" not in kustomization


def test_network_policy_limits_ingress_to_the_api_port(rendered: list[dict[str, Any]]) -> None:
    (policy,) = of_kind(rendered, "NetworkPolicy").values()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for rule in policy["spec"]["ingress"]:
        assert [p["port"] for p in rule["ports"]] == [8700]
        assert all("namespaceSelector" in peer for peer in rule["from"])
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 5432, 443}


def test_trusted_proxies_name_only_the_ingress_controller(rendered: list[dict[str, Any]]) -> None:
    """Trusting the whole pod range lets any pod forge X-Forwarded-For: the client IP of
    the access log, allowed CIDRs and the throttle. Only a small dedicated range."""
    networks = parse_networks(config_value(rendered, "DATAVAULT_TRUSTED_PROXIES"))
    assert networks, "an ingress needs its own address trusted, or every client is the ingress"
    for network in networks:
        assert network.num_addresses <= 256, f"{network} is wider than a /24 or /120"
        assert not network.is_global, f"{network}: a proxy inside the cluster has a private address"
    comment = (K8S / "config.env").read_text().split("DATAVAULT_TRUSTED_PROXIES=")[0]
    assert "never the cluster's pod range" in comment


def test_public_url_is_https_so_console_cookies_are_secure(
    rendered: list[dict[str, Any]],
) -> None:
    url = config_value(rendered, "DATAVAULT_PUBLIC_URL")
    assert url.startswith("https://")


# --- Dockerfile ------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_final_stage_is_minimal_and_unprivileged() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build expected"
    final = stages[-1]
    assert final[0].startswith("FROM python:3.11-slim") or "PYTHON_IMAGE" in final[0]
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    body = "\n".join(final).lower()
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "curl"):
        assert tool not in body, f"{tool} in the final stage"
    assert 'ENTRYPOINT ["datavault"]' in final
    assert 'CMD ["serve"]' in final
    assert "EXPOSE 8700" in final
    assert any("HEALTHCHECK" in line and "/healthz" in line for line in final)
    # The builder is where build tools belong.
    assert "build-essential" in "\n".join(stages[0])


# --- compose ---------------------------------------------------------------------------


def test_compose_publishes_on_loopback_and_keeps_secrets_out() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "api", "worker", "migrate", "prometheus"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["api"]["command"] == ["api"]
    assert services["worker"]["command"] == ["worker"]
    assert services["migrate"]["command"] == ["migrate"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"
        environment = service.get("environment", {})
        for key in environment:
            assert not re.search(r"PASSWORD|SECRET|DATABASE_URL", key), f"{name}: {key} inline"
    assert "rule_files" in yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())


# --- alerts and dashboard --------------------------------------------------------------


def test_alert_rules_are_complete_and_name_real_metrics() -> None:
    rules_file = yaml.safe_load((DEPLOY / "prometheus/alerts.yaml").read_text())
    exported = exported_metric_names()
    alerts: set[str] = set()
    for group in rules_file["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert rule["alert"] and rule["expr"], rule
            assert rule["labels"]["severity"], rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            alerts.add(rule["alert"])
            unknown = referenced_metrics(rule["expr"]) - exported
            assert not unknown, f"{rule['alert']} uses metrics nobody exports: {unknown}"
    assert len(alerts) == sum(len(g["rules"]) for g in rules_file["groups"]), "duplicate names"
    text = (DEPLOY / "prometheus/alerts.yaml").read_text()
    used = referenced_metrics(text)
    for name in (
        "datavault_integrity_failures_total",
        "datavault_access_log_write_failures_total",
        "datavault_ready",
        "datavault_http_request_duration_seconds_bucket",
        *ERASURE_ALERT_METRICS,
    ):
        assert name in used, name
        assert name in exported, name


def test_grafana_dashboard_panels_have_targets() -> None:
    dashboard = json.loads((DEPLOY / "grafana/datavault.json").read_text())
    exported = exported_metric_names()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"], panel["title"]
            unknown = referenced_metrics(target["expr"]) - exported
            assert not unknown, f"{panel['title']}: {unknown}"
