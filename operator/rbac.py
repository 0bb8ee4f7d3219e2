"""Every Kubernetes API permission the operator needs, declared once.

Why one table: the Helm chart renders its ClusterRole/Role from :data:`RULES`, and
``tests/operator/test_rbac.py`` derives the calls the code really makes (an AST scan of every
``client.<verb>(<Resource>, ...)`` call site in this package, plus the resources kopf watches and the
events it posts) and fails if the two differ in either direction. A verb the code stops using is
removed from the chart by the same test; a new call cannot ship without its permission.

The operator talks to the API in exactly two ways:

* kopf (list/watch of the watched resources, its own discovery of CRDs and namespaces, and posting
  core/v1 Events for ``kopf.info``/``kopf.warn``). kopf posts Events with ``POST /api/v1/.../events``
  only (no PATCH, no ``events.k8s.io``), see kopf/_cogs/clients/events.py.
* :class:`herl_operator.kube.KubeClient`, whose public methods are named after RBAC verbs and take one
  of the :class:`Resource` constants below, so a call site names its permission.

No Lease: the operator runs as one replica with ``strategy: Recreate`` (see docs/operator.md), and
kopf peering is off (``standalone``), so no ``kopfpeerings`` either.
"""

from __future__ import annotations

from dataclasses import dataclass

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class Resource:
    """An API resource (optionally a subresource) as the client addresses it."""

    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True
    subresource: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def rbac_resource(self) -> str:
        """The name used in a Role rule (``herljobs/status``)."""
        return f"{self.plural}/{self.subresource}" if self.subresource else self.plural

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection or of one object (and its subresource)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if self.subresource:
                base += f"/{self.subresource}"
        return base


HERLJOBS = Resource("herl.dev", "v1alpha1", "herljobs")
HERLJOBS_STATUS = Resource("herl.dev", "v1alpha1", "herljobs", subresource="status")
RAYJOBS = Resource("ray.io", "v1", "rayjobs")
CONFIGMAPS = Resource("", "v1", "configmaps")
JOBS = Resource("batch", "v1", "jobs")
EVENTS = Resource("", "v1", "events")
#: Kueue's Workload for a queued RayJob (v1beta2 since Kueue 0.15; v1beta1 before): a user suspend of an
#: admitted job is done by deactivating it (see reconcile.py), the only suspend Kueue does not undo.
WORKLOADS = Resource("kueue.x-k8s.io", "v1beta2", "workloads")
WORKLOADS_V1BETA1 = Resource("kueue.x-k8s.io", "v1beta1", "workloads")
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
#: The apiserver's service proxy to a Ray head's herl-metrics port (--progress-via apiserver).
SERVICES_PROXY = Resource("", "v1", "services", subresource="proxy")


@dataclass(frozen=True)
class Rule:
    """One RBAC rule: apiGroup, resource, verbs, and why the operator needs it."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    why: str
    cluster_scoped: bool = False
    #: Granted only when the chart sets operator.progressVia=apiserver (off by default: it lets the
    #: operator GET any Service through the apiserver, which in-cluster operators do not need).
    progress_via_apiserver: bool = False


RULES: tuple[Rule, ...] = (
    Rule(
        "herl.dev",
        "herljobs",
        ("list", "watch"),
        "kopf watches HeRLJobs (on.event handlers; the reconciler reads its in-memory cache)",
    ),
    Rule(
        "herl.dev",
        "herljobs/status",
        ("patch",),
        "the reconciler writes phase, conditions, attempts, progress (merge patch on /status)",
    ),
    Rule(
        "herl.dev",
        "herljobs/finalizers",
        ("update",),
        "our children's owner references set blockOwnerDeletion; with the OwnerReferencesPermission"
        "Enforcement admission plugin (OpenShift, hardened clusters) that needs update on the owner's "
        "finalizers, else every child create is refused with 403",
    ),
    Rule(
        "ray.io",
        "rayjobs",
        ("get", "list", "watch", "create", "patch", "delete"),
        "kopf watches owned RayJobs; the reconciler creates one per HeRLJob, reads it back on 409, "
        "patches suspend/labels, deletes it on budget stop and in its own cleanup",
    ),
    Rule(
        "kueue.x-k8s.io",
        "workloads",
        ("list", "patch"),
        "runPolicy.suspend of a queued job: Kueue unsuspends an admitted RayJob that anyone else suspends "
        "(a create/delete loop of GPU clusters), so the operator sets the Workload's spec.active instead "
        "(listed by Kueue's job-uid label; only on a suspend or resume)",
    ),
    Rule(
        "",
        "configmaps",
        ("get", "create", "delete"),
        "the job.yaml ConfigMap the trainer reads; read back on 409; deleted in cleanup",
    ),
    Rule(
        "batch",
        "jobs",
        ("create",),
        "checkpoint retention Delete: a one-off Job that empties the job's checkpoint folder on the PVC",
    ),
    Rule("", "events", ("create",), "kopf.info/kopf.warn post core/v1 Events for every transition"),
    Rule(
        "",
        "services/proxy",
        ("get",),
        "--progress-via apiserver: the trainer's /metrics read through the apiserver's service proxy "
        "(an operator outside the cluster network); chart value operator.progressVia=apiserver",
        progress_via_apiserver=True,
    ),
    Rule(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("list", "watch"),
        "kopf discovers the watched CRDs and notices when they appear",
        cluster_scoped=True,
    ),
    Rule(
        "",
        "namespaces",
        ("list", "watch"),
        "kopf follows namespaces when running cluster-wide or with namespace patterns",
        cluster_scoped=True,
    ),
)


def permissions(*, progress_via_apiserver: bool = False) -> set[tuple[str, str, str]]:
    """The table flattened to (apiGroup, resource, verb) triples, for comparisons."""
    return {
        (r.api_group, r.resource, v)
        for r in RULES
        if progress_via_apiserver or not r.progress_via_apiserver
        for v in r.verbs
    }


def as_policy_rules(
    *, include_cluster_scoped: bool = True, progress_via_apiserver: bool = False
) -> list[dict[str, list[str]]]:
    """The table as Kubernetes PolicyRule dicts (what a ClusterRole/Role template renders)."""
    return [
        {"apiGroups": [r.api_group], "resources": [r.resource], "verbs": list(r.verbs)}
        for r in RULES
        if (include_cluster_scoped or not r.cluster_scoped)
        and (progress_via_apiserver or not r.progress_via_apiserver)
    ]
