"""The Kubernetes manifests: every overlay builds with `kubectl kustomize`, validates against the Kubernetes
schemas (kubernetes-validate, strict), the InferenceService against KServe's own API model classes, and
carries no credential, non-root security contexts, probes and resource limits.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
SECRETS_DIR = Path("components") / "secrets-from-env"
K8S_VERSION = "1.33"  # a release kubernetes-validate ships schemas for; KServe 0.15+ supports it
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def kustomize(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of manifests/ whose git-ignored env files are the committed examples (placeholders only)."""
    copy = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("*.env"))
    for example in (copy / SECRETS_DIR).glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    return copy


@pytest.fixture(scope="module", params=OVERLAYS, ids=[f"overlay-{name}" for name in OVERLAYS])
def built(request: pytest.FixtureRequest, tree: Path) -> tuple[str, list[dict]]:
    result = kustomize(tree / "overlays" / request.param)
    assert result.returncode == 0, result.stderr
    return request.param, [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_specs(doc: dict) -> list[dict]:
    """The pod specs a resource creates (workload templates and the InferenceService predictor)."""
    if doc["kind"] in WORKLOAD_KINDS:
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "InferenceService":
        return [doc["spec"]["predictor"]]
    return []


def test_overlays_exist():
    assert {"dev", "gpu"} <= set(OVERLAYS)


def test_build_without_env_files_fails_with_the_missing_file_named(tmp_path: Path):
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("*.env"))
    result = kustomize(copy / "overlays" / "dev")
    assert result.returncode != 0
    assert ".env" in result.stderr


def test_every_resource_validates_strictly(built: tuple[str, list[dict]]):
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    overlay, docs = built
    unchecked = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except SchemaNotFoundError:
            unchecked.append(doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']} at {path}: {exc.message}")
    # only custom resources lack a built-in schema; they are checked by test_inference_service_*
    assert unchecked == ["InferenceService"]
    kinds = {doc["kind"] for doc in docs}
    expected = {"Namespace", "StatefulSet", "Deployment", "Job", "Service", "ServiceAccount", "Role"}
    assert expected | {"RoleBinding", "NetworkPolicy", "ConfigMap", "Secret"} <= kinds


# --- the InferenceService against KServe's API model classes -------------------------------------------


def _resolve(type_name: str) -> type:
    import kserve
    import kubernetes.client

    for module in (kserve, kubernetes.client):
        if hasattr(module, type_name):
            return getattr(module, type_name)
    raise AssertionError(f"unknown API type {type_name}")


def check_api_object(value: object, type_name: str, path: str) -> None:
    """Check ``value`` (parsed YAML) against an OpenAPI-generated model type, recursively: unknown fields,
    wrong types and missing required fields (the model constructors reject None there) all fail."""
    if type_name.startswith("list["):
        assert isinstance(value, list), f"{path}: expected a list, got {value!r}"
        for i, item in enumerate(value):
            check_api_object(item, type_name[5:-1], f"{path}[{i}]")
        return
    if type_name.startswith("dict("):
        assert isinstance(value, dict), f"{path}: expected a mapping, got {value!r}"
        value_type = type_name[5:-1].split(", ", 1)[1]
        for key, item in value.items():
            check_api_object(item, value_type, f"{path}.{key}")
        return
    primitives = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if type_name in primitives:
        ok = isinstance(value, primitives[type_name]) and not (type_name == "int" and isinstance(value, bool))
        assert ok, f"{path}: expected {type_name}, got {value!r}"
        return
    cls = _resolve(type_name)
    assert isinstance(value, dict), f"{path}: expected a {type_name} mapping, got {value!r}"
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(by_key))
    assert not unknown, f"{path}: fields {unknown} are not part of {type_name}"
    kwargs = {}
    for key, item in value.items():
        attr = by_key[key]
        check_api_object(item, cls.openapi_types[attr], f"{path}.{key}")
        kwargs[attr] = item
    try:
        cls(**kwargs)
    except ValueError as exc:
        raise AssertionError(f"{path}: {exc}") from None


def test_inference_service_matches_kserve_api(built: tuple[str, list[dict]]):
    _, docs = built
    (isvc,) = [doc for doc in docs if doc["kind"] == "InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    check_api_object(isvc, "V1beta1InferenceService", "InferenceService")
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"  # the name KServe's storage-initializer injection expects
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert re.fullmatch(r"s3://urbangen/[\w./-]+", env["STORAGE_URI"])
    sa = next(
        d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == predictor["serviceAccountName"]
    )
    (secret_ref,) = sa["secrets"]
    secret = next(
        d
        for d in docs
        if d["kind"] == "Secret"
        and d["metadata"]["name"] == secret_ref["name"]
        and d["metadata"]["namespace"] == isvc["metadata"]["namespace"]
    )
    annotations = secret["metadata"]["annotations"]
    assert annotations["serving.kserve.io/s3-endpoint"] == "urbangen-minio:9000"
    assert annotations["serving.kserve.io/s3-usehttps"] == "0"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["data"])


def test_the_api_check_rejects_bad_inference_services():
    good = {"apiVersion": "v", "kind": "InferenceService", "spec": {"predictor": {"containers": [{"name": "c"}]}}}
    check_api_object(good, "V1beta1InferenceService", "isvc")
    bad_field = {"spec": {"predictor": {"containers": [{"name": "c", "imagee": "x"}]}}}
    with pytest.raises(AssertionError, match="imagee"):
        check_api_object(bad_field, "V1beta1InferenceService", "isvc")
    bad_type = {"spec": {"predictor": {"minReplicas": "1"}}}
    with pytest.raises(AssertionError, match="expected int"):
        check_api_object(bad_type, "V1beta1InferenceService", "isvc")
    missing_name = {"spec": {"predictor": {"containers": [{"image": "x"}]}}}
    with pytest.raises(AssertionError, match="name"):
        check_api_object(missing_name, "V1beta1InferenceService", "isvc")


# --- credentials ----------------------------------------------------------------------------------------


def test_no_secret_in_committed_files():
    tracked = subprocess.run(
        ["git", "ls-files", "manifests"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    files = [ROOT / name for name in tracked] or [p for p in MANIFESTS.rglob("*") if p.is_file()]
    assert not [f for f in files if f.name.endswith(".env")], "an env file with credentials is tracked"
    for path in files:
        if path.suffix in {".yaml", ".yml"}:
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict):
                    assert doc.get("kind") != "Secret", f"{path} defines a Secret literally"
                    assert "secretGenerator" not in doc or all(
                        "literals" not in gen for gen in doc["secretGenerator"]
                    ), f"{path} has secret literals"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(MANIFESTS / SECRETS_DIR / "s3.env")], cwd=ROOT)
    assert ignored.returncode == 0, "the env files beside the examples must be git-ignored"


def test_secrets_only_from_env_files_and_references_resolve(built: tuple[str, list[dict]], tree: Path):
    import base64

    overlay, docs = built
    examples = [read_env(p) for p in sorted((tree / SECRETS_DIR).glob("*.env.example"))]
    secrets = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Secret"}
    for (namespace, name), secret in secrets.items():
        assert "stringData" not in secret
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data in examples, f"{overlay}: Secret {namespace}/{name} does not come from an env file"
    # every Secret a pod reads exists in its namespace with the key it asks for
    for doc in docs:
        for spec in pod_specs(doc):
            for container in spec["containers"] + spec.get("initContainers", []):
                namespace = doc["metadata"]["namespace"]
                for source in container.get("envFrom", []):
                    if "secretRef" in source:
                        assert (namespace, source["secretRef"]["name"]) in secrets
                for var in container.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in secrets[(namespace, ref["name"])]["data"], f"{overlay}: {ref}"
                    assert not re.search(r"(?i)(password|secret|token)", var["name"]) or "value" not in var, (
                        f"{overlay}: {var['name']} is set literally"
                    )


# --- pod hardening ---------------------------------------------------------------------------------------


def test_every_container_is_hardened_and_bounded(built: tuple[str, list[dict]]):
    overlay, docs = built
    checked = 0
    for doc in docs:
        for spec in pod_specs(doc):
            pod_sc = spec.get("securityContext", {})
            for container in spec["containers"] + spec.get("initContainers", []):
                where = f"{overlay}: {doc['kind']}/{doc['metadata']['name']} container {container['name']}"
                sc = container.get("securityContext", {})
                assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
                assert sc.get("allowPrivilegeEscalation") is False, where
                assert sc.get("readOnlyRootFilesystem") is True, where
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
                seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
                assert seccomp.get("type") == "RuntimeDefault", where
                resources = container.get("resources", {})
                assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
                assert {"cpu", "memory"} <= set(resources.get("limits", {})), where
                if doc["kind"] != "Job":
                    assert "readinessProbe" in container and "livenessProbe" in container, where
                checked += 1
    assert checked >= 5


def test_gpu_settings_only_in_the_gpu_overlay(built: tuple[str, list[dict]]):
    overlay, docs = built
    (isvc,) = [doc for doc in docs if doc["kind"] == "InferenceService"]
    predictor = isvc["spec"]["predictor"]
    container = predictor["containers"][0]
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    if overlay == "gpu":
        assert gpus == "1"
        assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in predictor["tolerations"]
        assert "--backend=tensorrt" in container["args"]
        assert container["image"].endswith("-gpu")
    else:
        assert gpus is None and "nodeSelector" not in predictor
        assert container["image"].endswith("-cpu")


def test_network_policies_deny_by_default_and_admit_each_service(built: tuple[str, list[dict]]):
    overlay, docs = built
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies)
    for service in (d for d in docs if d["kind"] == "Service"):
        labels = service["spec"]["selector"]
        admitted = [
            p
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels")
            and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
            and p["spec"].get("ingress")
        ]
        assert admitted, f"{overlay}: nothing may reach Service {service['metadata']['name']}"
    postgres = next(p for p in policies if p["metadata"]["name"] == "urbangen-postgres")
    assert postgres["spec"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}
    ]


def test_image_tags_follow_the_package_version(built: tuple[str, list[dict]]):
    from urbangen import __version__

    overlay, docs = built
    (isvc,) = [doc for doc in docs if doc["kind"] == "InferenceService"]
    image = isvc["spec"]["predictor"]["containers"][0]["image"]
    variant = "gpu" if overlay == "gpu" else "cpu"
    assert image == f"ghcr.io/urbangen/urbangen-serving:{__version__}-{variant}"


@pytest.mark.parametrize("dockerfile", ["components/Dockerfile", "serving/Dockerfile"])
def test_dockerfiles_pin_the_version_and_run_as_non_root(dockerfile: str):
    text = (ROOT / dockerfile).read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    final_stages = [s for s in stages if "ENTRYPOINT" in s or "CMD" in s]
    assert final_stages
    for stage in final_stages:
        assert "ARG URBANGEN_VERSION" in stage
        assert "urbangen-${URBANGEN_VERSION}-py3-none-any.whl" in stage  # the version must match the source
        user = re.findall(r"(?m)^USER (\S+)", stage)
        assert user and not user[-1].startswith(("root", "0")), f"{dockerfile}: last USER is {user}"
    assert ("tensorrt" in text) == (dockerfile == "serving/Dockerfile")
