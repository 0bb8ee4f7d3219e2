"""The RBAC table equals what the code really calls: client call sites (AST) + what kopf does."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml
from herl_operator import rbac
from herl_operator.handlers import OperatorConfig, build_registry
from herl_operator.kube import KubeClient
from op_helpers import REPO

OPERATOR_DIR = REPO / "operator"
CLIENT_VERBS = {n for n in ("get", "list", "create", "patch", "delete") if hasattr(KubeClient, n)}
RESOURCES = {
    name: getattr(rbac, name) for name in dir(rbac) if isinstance(getattr(rbac, name), rbac.Resource)
}
KOPF_EVENT_FUNCS = {"event", "info", "warn", "exception"}


def _client_calls() -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for path in OPERATOR_DIR.glob("*.py"):
        if path.name == "submit.py":  # runs with the user's credentials, not the operator's
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            verb = node.func.attr
            if (
                verb not in CLIENT_VERBS
                or not node.args
                or not ast.unparse(node.func.value).endswith("client")
            ):
                continue  # only KubeClient call sites (`client.x`, `self.client.x`)
            arg = node.args[0]
            name = arg.attr if isinstance(arg, ast.Attribute) else getattr(arg, "id", None)
            if name in RESOURCES:
                res = RESOURCES[name]
                found.add((res.group, res.rbac_resource, verb))
            else:
                raise AssertionError(f"{path.name}:{node.lineno}: client.{verb}() must name an rbac.Resource")
    return found


def _posts_events() -> bool:
    for path in OPERATOR_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "kopf"
                and node.func.attr in KOPF_EVENT_FUNCS
            ):
                return True
    return False


def _kopf_needs() -> set[tuple[str, str, str]]:
    registry, _ = build_registry(OperatorConfig(metrics_port=None))
    out: set[tuple[str, str, str]] = set()
    for handler in registry._watching.get_all_handlers():
        sel = handler.selector
        out |= {(sel.group or "", sel.plural or sel.any_name, v) for v in ("list", "watch")}
    changing = list(registry._changing.get_all_handlers()) + list(registry._spawning.get_all_handlers())
    assert not changing, "kopf would persist progress and finalizers: add herljobs patch to the table"
    out |= {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
    out |= {("", "namespaces", v) for v in ("list", "watch")}
    if _posts_events():
        out.add(("", "events", "create"))
    return out


def _admission_needs() -> set[tuple[str, str, str]]:
    """OwnerReferencesPermissionEnforcement: blockOwnerDeletion on a child needs update on the owner's
    finalizers (proven on the real apiserver by tests/e2e)."""
    from herl_operator import builders

    from herl.api.model import HeRLJob

    doc = yaml.safe_load((REPO / "manifests/samples/if-qwen2.5-7b.yaml").read_text())
    rj = builders.build_rayjob(HeRLJob.model_validate(doc), builders.Context(namespace="ns", uid="u-1"))
    blocking = any(r.get("blockOwnerDeletion") for r in rj["metadata"].get("ownerReferences", []))
    return {("herl.dev", "herljobs/finalizers", "update")} if blocking else set()


def test_rbac_table_matches_the_code_exactly() -> None:
    derived = _client_calls() | _kopf_needs() | _admission_needs()
    declared = rbac.permissions(progress_via_apiserver=True)
    assert derived - declared == set(), f"used but not declared: {sorted(derived - declared)}"
    assert declared - derived == set(), f"declared but unused: {sorted(declared - derived)}"


def test_scanner_sees_known_call_sites() -> None:
    calls = _client_calls()
    assert ("ray.io", "rayjobs", "create") in calls and ("herl.dev", "herljobs/status", "patch") in calls


def test_policy_rules_shape() -> None:
    rules = rbac.as_policy_rules()
    assert all(set(r) == {"apiGroups", "resources", "verbs"} for r in rules)
    namespaced = rbac.as_policy_rules(include_cluster_scoped=False)
    assert not any(r["resources"] == ["namespaces"] for r in namespaced)
    assert Path(rbac.__file__).parent == OPERATOR_DIR
