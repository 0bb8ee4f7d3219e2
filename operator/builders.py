"""Pure builders: HeRLJob → the objects the operator creates (RayJob, ConfigMap, cleanup Job).

Pure on purpose (no I/O, no clock, no globals): ``herl render`` prints exactly what the operator
would create, the contract tests validate it against KubeRay's CRD and Kubernetes' schemas, and the
reconciler only applies it. Security rule: no value from the spec is ever placed in a shell line.
The RayJob ``entrypoint`` (which Ray runs through a shell) is the constant :data:`ENTRYPOINT`; the
spec travels as ConfigMap data mounted at :data:`JOB_FILE`, everything else as env *values*.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import yaml

from herl.api.model import API_GROUP, API_VERSION, KIND, HeRLJob
from herl.images import TRAINER_GID

ENTRYPOINT = "python -m herl.train --job /etc/herl/job.yaml"
CONFIG_DIR = "/etc/herl"
JOB_FILE = f"{CONFIG_DIR}/job.yaml"
CHECKPOINT_MOUNT = "/checkpoints"
HEAD_RAY_CPUS = "1"
#: The Ray version inside each engine's trainer image (KubeRay gates features on rayVersion): the GPU
#: image's, and the CPU image's herl[ray] pin (pyproject.toml; a test keeps them equal).
RAY_VERSIONS = {"verl": "2.49.0", "local": "2.60.0"}
RAYJOB_MAX_NAME = 47  # KubeRay: 63 - len("-head-svc") - 6 random chars, rounded as documented

LABEL_JOB = f"{API_GROUP}/job"
LABEL_JOB_UID = f"{API_GROUP}/job-uid"
ANNOTATION_SUSPENDED_BY_US = f"{API_GROUP}/suspended-by-operator"
#: On a queued job's RayJob: the operator deactivated its Kueue Workload (runPolicy.suspend).
ANNOTATION_WORKLOAD_DEACTIVATED = f"{API_GROUP}/kueue-workload-deactivated"
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY = "kueue.x-k8s.io/priority-class"
MANAGED_BY = "herl-operator"
METRICS_PORT_NAME = "herl-metrics"
#: KubeRay's default head ports (controllers/ray/utils/constant.go). KubeRay fills the head Service with
#: these only when the head container declares *no* ports (common/service.go ``getServicePorts``); as
#: soon as we declare ``herl-metrics`` we must declare them too, or the Service has no ``dashboard``
#: port, KubeRay never finds the dashboard, never submits, and the job sits in Provisioning.
RAY_HEAD_PORTS = (("gcs-server", 6379), ("dashboard", 8265), ("client", 10001), ("metrics", 8080))
#: The submitter pod's resources: KubeRay's own defaults for its default submitter (common/job.go); a
#: custom template without them is refused in namespaces with a ResourceQuota.
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode")
SUBMITTER_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "200Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
#: Env names the operator sets; user spec.env entries with these names are dropped (ours win).
OWNED_ENV = frozenset(
    {
        "HERL_CHECKPOINT_DIR",
        "HERL_CHECKPOINT_URI",
        "HERL_JOB_NAME",
        "HERL_JOB_NAMESPACE",
        "HERL_METRICS_PORT",
        "HERL_JUDGE_API_KEY",
        "HERL_JOB_FILE",
    }
)

JSON = dict[str, Any]


def rayjob_name(job_name: str) -> str:
    """The RayJob name: the HeRLJob's own name (≤ 40 chars by the CRD), so ``kubectl get rayjob`` reads
    naturally. Longer names (only possible if admission was bypassed) are cut and suffixed with a hash
    so the result stays deterministic, unique and ≤ 47 chars DNS-1035."""
    if len(job_name) <= RAYJOB_MAX_NAME:
        return job_name
    digest = hashlib.sha256(job_name.encode()).hexdigest()[:8]
    return f"{job_name[: RAYJOB_MAX_NAME - 9].rstrip('-')}-{digest}"


def configmap_name(job_name: str) -> str:
    return f"{rayjob_name(job_name)}-spec"


def cleanup_job_name(job_name: str, uid: str | None = None) -> str:
    """One cleanup Job per deleted HeRLJob (uid-suffixed: the same name deleted twice within the Job's
    TTL still gets its own cleanup)."""
    base = f"{rayjob_name(job_name)[:40].rstrip('-')}-ckpt-cleanup"
    return f"{base}-{uid[:8]}" if uid else base


def checkpoint_subpath(job: HeRLJob, namespace: str, uid: str | None = None) -> str:
    """Stable per-HeRLJob folder on the PVC, so every retry/preemption resumes from the same place.

    Keyed by the HeRLJob's uid: a job deleted and re-created under the same name is a new job, so it
    neither resumes from the old one's checkpoints nor loses its own to the old one's cleanup Job
    (retention Delete). A user-chosen ``pvc.subPath`` is used as given (docs/operator.md)."""
    pvc = job.spec.checkpoints_.pvc
    if pvc and pvc.sub_path:
        return pvc.sub_path
    base = f"herl/{namespace}/{job.metadata.name}"
    return f"{base}/{uid}" if uid else base


def labels(name: str, component: str | None = None) -> dict[str, str]:
    """Our labels, on every object and pod template (selectors for metrics, logs and cleanup)."""
    out = {
        LABEL_JOB: name,
        "app.kubernetes.io/name": "herl",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "herl",
    }
    if component:
        out["app.kubernetes.io/component"] = component
    return out


@dataclass(frozen=True)
class Context:
    """What the builders need besides the spec: identity of the owner and where it lives."""

    namespace: str
    uid: str | None = None  # HeRLJob metadata.uid (absent only in emulators without uids)
    suspend: bool | None = None  # override of the RayJob's spec.suspend (None: from the spec/queue)
    #: How KubeRay submits the entrypoint (an operator setting, ``--submission-mode``): K8sJobMode runs a
    #: submitter pod (``ray job submit``, its log shows the submission); HTTPMode has KubeRay post the job
    #: to the dashboard itself (no extra pod; needed where KubeRay reaches the dashboard through the
    #: apiserver proxy, e.g. the e2e cluster).
    submission_mode: str = "K8sJobMode"


def owner_reference(job: HeRLJob, uid: str | None) -> list[JSON]:
    if not uid:
        return []
    return [
        {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": job.metadata.name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _metadata(
    job: HeRLJob,
    ctx: Context,
    name: str,
    component: str | None = None,
    extra_labels: dict[str, str] | None = None,
) -> JSON:
    lab = labels(job.metadata.name, component)
    if ctx.uid:
        lab[LABEL_JOB_UID] = ctx.uid
    lab.update(extra_labels or {})
    meta: JSON = {"name": name, "namespace": ctx.namespace, "labels": lab}
    refs = owner_reference(job, ctx.uid)
    if refs:
        meta["ownerReferences"] = refs
    return meta


def job_document(job: HeRLJob, raw_spec: JSON | None = None, namespace: str | None = None) -> JSON:
    """The file the trainer reads: the HeRLJob as the user wrote it (presets are re-applied there)."""
    spec = (
        raw_spec
        if raw_spec is not None
        else job.spec.model_dump(by_alias=True, exclude_unset=True, mode="json")
    )
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": job.metadata.name, "namespace": namespace or job.metadata.namespace},
        "spec": spec,
    }


def build_configmap(job: HeRLJob, ctx: Context, raw_spec: JSON | None = None) -> JSON:
    """The ConfigMap holding job.yaml (data, never shell)."""
    text = yaml.safe_dump(job_document(job, raw_spec, ctx.namespace), sort_keys=False, allow_unicode=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(job, ctx, configmap_name(job.metadata.name), "config"),
        "data": {"job.yaml": text},
    }


def _env(job: HeRLJob, ctx: Context) -> list[JSON]:
    spec = job.spec
    env: list[JSON] = []
    for item in spec.env or []:
        if item.name in OWNED_ENV:
            continue
        if item.secret_key_ref is not None:
            env.append(
                {
                    "name": item.name,
                    "valueFrom": {
                        "secretKeyRef": {"name": item.secret_key_ref.name, "key": item.secret_key_ref.key}
                    },
                }
            )
        else:
            env.append({"name": item.name, "value": item.value or ""})
    env += [
        {"name": "HERL_JOB_NAME", "value": job.metadata.name},
        {"name": "HERL_JOB_NAMESPACE", "value": ctx.namespace},
        {"name": "HERL_JOB_FILE", "value": JOB_FILE},
    ]
    ck = spec.checkpoints_
    if ck.pvc is not None:
        env.append({"name": "HERL_CHECKPOINT_DIR", "value": CHECKPOINT_MOUNT})
    if ck.uri:
        env.append({"name": "HERL_CHECKPOINT_URI", "value": ck.uri})
    if spec.metrics_.enabled:
        env.append({"name": "HERL_METRICS_PORT", "value": str(spec.metrics_.port)})
    judge = spec.reward_.judge
    if judge is not None and judge.api_key_secret_ref is not None:
        env.append(
            {
                "name": "HERL_JUDGE_API_KEY",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": judge.api_key_secret_ref.name,
                        "key": judge.api_key_secret_ref.key,
                    }
                },
            }
        )
    return env


def _volumes(job: HeRLJob, namespace: str, uid: str | None) -> tuple[list[JSON], list[JSON]]:
    res = job.spec.resources_
    vols: list[JSON] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shared_memory}},
        {"name": "herl-job", "configMap": {"name": configmap_name(job.metadata.name)}},
    ]
    mounts: list[JSON] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "herl-job", "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    pvc = job.spec.checkpoints_.pvc
    if pvc is not None:
        vols.append({"name": "checkpoints", "persistentVolumeClaim": {"claimName": pvc.claim_name}})
        mounts.append(
            {
                "name": "checkpoints",
                "mountPath": CHECKPOINT_MOUNT,
                "subPath": checkpoint_subpath(job, namespace, uid),
            }
        )
    return vols, mounts


def _pod_template(job: HeRLJob, ctx: Context, *, head: bool) -> JSON:
    spec, res = job.spec, job.spec.resources_
    vols, mounts = _volumes(job, ctx.namespace, ctx.uid)
    head_gpus = res.head.gpus if res.head else 0
    if head:
        h = res.head
        cpu, mem = (h.cpu, h.memory) if h else ("4", "32Gi")
        resources: JSON = {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu, "memory": mem}}
        if head_gpus:
            for part in resources.values():
                part["nvidia.com/gpu"] = str(head_gpus)
    else:
        gpus = str(res.gpus_per_worker)
        resources = {
            "requests": {"cpu": res.cpu, "memory": res.memory, "nvidia.com/gpu": gpus},
            "limits": {"cpu": res.cpu, "memory": res.memory, "nvidia.com/gpu": gpus},
        }
    container: JSON = {
        "name": "ray-head" if head else "ray-worker",
        "image": spec.trainer_image,
        "imagePullPolicy": res.image_pull_policy,
        "resources": resources,
        "env": _env(job, ctx),
        "volumeMounts": mounts,
    }
    if head:
        ports = [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in RAY_HEAD_PORTS]
        if spec.metrics_.enabled:
            ports.append({"name": METRICS_PORT_NAME, "containerPort": spec.metrics_.port, "protocol": "TCP"})
        container["ports"] = ports
    # fsGroup: the trainer images run as a non-root user; the kubelet makes the checkpoint volume (and
    # the subPath it creates) group-writable for it. Without it every checkpoint save fails.
    pod: JSON = {"containers": [container], "volumes": vols, "securityContext": {"fsGroup": TRAINER_GID}}
    if res.service_account_name:
        pod["serviceAccountName"] = res.service_account_name
    selector: dict[str, str] = {}
    tolerations = []
    if head and res.head:
        selector.update(res.head.node_selector or {})
        tolerations += res.head.tolerations or []
    # The GPU placement goes where the GPUs are: the workers, or a local-engine head with GPUs.
    if not head or head_gpus:
        selector.update(res.node_selector or {})
        if res.gpu_type:
            selector[res.gpu_type_label] = res.gpu_type
        tolerations += res.tolerations or []
        if res.affinity:
            pod["affinity"] = res.affinity
    if selector:
        pod["nodeSelector"] = selector
    if tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in tolerations]
    component = "ray-head" if head else "ray-worker"
    return {"metadata": {"labels": labels(job.metadata.name, component)}, "spec": pod}


def desired_suspend(job: HeRLJob) -> bool:
    """Created suspended when the user asks for it, or when queued (Kueue admits by unsuspending;
    creating it suspended means no cluster can start before admission, whatever webhook order)."""
    return job.spec.run_policy_.suspend or job.spec.queue is not None


def queue_labels(job: HeRLJob) -> dict[str, str]:
    q = job.spec.queue
    if q is None:
        return {}
    out = {KUEUE_QUEUE: q.name}
    if q.priority_class:
        out[KUEUE_PRIORITY] = q.priority_class
    return out


def _worker_groups(job: HeRLJob, ctx: Context) -> list[JSON]:
    """One GPU worker group for veRL; none for the local engine (it trains on the head)."""
    if job.spec.engine == "local":
        return []
    res = job.spec.resources_
    return [
        {
            "groupName": "gpu",
            "replicas": res.workers,
            "minReplicas": res.workers,
            "maxReplicas": res.workers,
            "rayStartParams": {},
            "template": _pod_template(job, ctx, head=False),
        }
    ]


def build_rayjob(job: HeRLJob, ctx: Context) -> JSON:
    """The ray.io/v1 RayJob for ``job``: the head (the driver) + one GPU worker group (engine verl), or
    the head alone (engine local, which trains in the driver process)."""
    mode = job.spec.run_policy_.submission_mode or ctx.submission_mode
    if mode not in SUBMISSION_MODES:
        raise ValueError(f"submission mode {mode!r}: allowed {', '.join(SUBMISSION_MODES)}")
    spec, res, rp = job.spec, job.spec.resources_, job.spec.run_policy_
    name = rayjob_name(job.metadata.name)
    meta = _metadata(job, ctx, name, "rayjob", queue_labels(job))
    suspend = desired_suspend(job) if ctx.suspend is None else ctx.suspend
    if suspend and rp.suspend and job.spec.queue is None:
        meta["annotations"] = {ANNOTATION_SUSPENDED_BY_US: "true"}
    rj_spec: JSON = {
        "entrypoint": ENTRYPOINT,
        "submissionMode": mode,
        "shutdownAfterJobFinishes": True,
        "backoffLimit": rp.backoff_limit,
        "suspend": suspend,
        "metadata": {"herl.dev/job": job.metadata.name},
        "rayClusterSpec": {
            "rayVersion": RAY_VERSIONS[spec.engine],
            "headGroupSpec": {
                # One logical CPU on the head: veRL's TaskRunner (the training loop, which serves the
                # herl-metrics port) is pinned there by herl.verl_plugin.launch and needs 1 CPU to be
                # scheduled; GPU work stays on the workers.
                "rayStartParams": {
                    "num-cpus": HEAD_RAY_CPUS,
                    "num-gpus": str(res.head.gpus if res.head else 0),
                    "dashboard-host": "0.0.0.0",
                },
                "template": _pod_template(job, ctx, head=True),
            },
            "workerGroupSpecs": _worker_groups(job, ctx),
        },
    }
    if rp.attempt_deadline_seconds:
        rj_spec["activeDeadlineSeconds"] = rp.attempt_deadline_seconds
    if spec.resources_.service_account_name and mode == "K8sJobMode":
        rj_spec["submitterPodTemplate"] = {
            "metadata": {"labels": labels(job.metadata.name, "submitter")},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": res.service_account_name,
                "containers": [
                    {
                        "name": "ray-job-submitter",
                        "image": spec.trainer_image,
                        "imagePullPolicy": res.image_pull_policy,
                        "resources": SUBMITTER_RESOURCES,
                    }
                ],
            },
        }
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta, "spec": rj_spec}


def build_cleanup_job(job: HeRLJob, ctx: Context) -> JSON | None:
    """retention: Delete with a PVC → a one-off Job that empties this HeRLJob's checkpoint folder.

    The folder is mounted *as* the volume's subPath, so the command is a constant (``find <mount>
    -mindepth 1 -delete``) and can touch nothing outside it. No owner reference: the HeRLJob is gone
    when this runs; ``ttlSecondsAfterFinished`` removes the Job afterwards. Object-store URIs are not
    deleted by the operator (it holds no storage credentials); see docs/operator.md.
    """
    ck = job.spec.checkpoints_
    if ck.retention != "Delete" or ck.pvc is None:
        return None
    res = job.spec.resources_
    meta = _metadata(
        job, Context(ctx.namespace), cleanup_job_name(job.metadata.name, ctx.uid), "checkpoint-cleanup"
    )
    pod: JSON = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "cleanup",
                "image": job.spec.trainer_image,
                "imagePullPolicy": res.image_pull_policy,
                "command": ["find", CHECKPOINT_MOUNT, "-mindepth", "1", "-delete"],
                "volumeMounts": [
                    {
                        "name": "checkpoints",
                        "mountPath": CHECKPOINT_MOUNT,
                        "subPath": checkpoint_subpath(job, ctx.namespace, ctx.uid),
                    }
                ],
            }
        ],
        "volumes": [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": ck.pvc.claim_name}}],
    }
    if res.service_account_name:
        pod["serviceAccountName"] = res.service_account_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels(job.metadata.name, "checkpoint-cleanup")},
                "spec": pod,
            },
        },
    }
