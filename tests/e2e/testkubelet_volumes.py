"""What a pod needs before its command runs: volumes materialised on disk, and the env resolved.

Pure reads of the API (a kubernetes ``CoreV1Api``) plus file writes under the pod's folder; no
namespaces or processes (those are in testkubelet.py and testkubelet_pod.py). Unsupported kinds fail the
pod with a message that names the volume, the way a kubelet reports a mount error, never silently.
"""

from __future__ import annotations

import base64
import math
import os
import re
from pathlib import Path
from typing import Any

JSON = dict[str, Any]


class PodSetupError(Exception):
    """The pod cannot start (reported in its status, like a kubelet's CreateContainerConfigError)."""


def _write_keys(folder: Path, data: dict[str, str], items: list[JSON] | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
    for key, rel in wanted.items():
        if key not in data:
            raise PodSetupError(f"key {key!r} is not in the source of the volume")
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[key])


def _configmap(core: Any, namespace: str, name: str) -> dict[str, str]:
    cm = core.read_namespaced_config_map(name, namespace)
    return dict(cm.data or {})


def _secret(core: Any, namespace: str, name: str) -> dict[str, str]:
    sec = core.read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (sec.data or {}).items()}


def field_value(pod: JSON, path: str) -> str:
    """A downward-API fieldRef (the paths the kubelet supports)."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path not in simple:
        raise PodSetupError(f"fieldRef {path!r} is not supported by the test kubelet")
    return str(simple[path] or "")


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "m": 1e-3}


def quantity(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    if not m or (m.group(2) and m.group(2) not in _SUFFIX):
        raise PodSetupError(f"quantity {text!r} is not understood by the test kubelet")
    return float(m.group(1)) * _SUFFIX.get(m.group(2), 1)


def resource_value(container: JSON, ref: JSON) -> str:
    """A resourceFieldRef, rounded up like the kubelet (divisor 1 unless given)."""
    part, _, name = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(part) or {}).get(name)
    if value is None:
        raise PodSetupError(f"resourceFieldRef {ref['resource']!r}: the container sets no {ref['resource']}")
    return str(math.ceil(quantity(value) / quantity(ref.get("divisor") or "1")))


def resolve_env(core: Any, pod: JSON, container: JSON, base: dict[str, str]) -> dict[str, str]:
    """The container's environment: ``base`` (the image's), then envFrom, then env, in pod order."""
    ns = pod["metadata"]["namespace"]
    env = dict(base)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            env.update({prefix + k: v for k, v in _configmap(core, ns, src["configMapRef"]["name"]).items()})
        elif "secretRef" in src:
            env.update({prefix + k: v for k, v in _secret(core, ns, src["secretRef"]["name"]).items()})
    for item in container.get("env") or []:
        if "valueFrom" not in item:
            # $(VAR) expansion as the kubelet does it, for variables defined earlier.
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                item.get("value", ""),
            )
            continue
        vf = item["valueFrom"]
        if "fieldRef" in vf:
            env[item["name"]] = field_value(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            env[item["name"]] = resource_value(container, vf["resourceFieldRef"])
        elif "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            env[item["name"]] = _configmap(core, ns, ref["name"])[ref["key"]]
        elif "secretKeyRef" in vf:
            ref = vf["secretKeyRef"]
            env[item["name"]] = _secret(core, ns, ref["name"])[ref["key"]]
        else:
            raise PodSetupError(f"env {item['name']}: valueFrom {sorted(vf)} is not supported")
    return env


def _projected(core: Any, pod: JSON, vol: JSON, folder: Path) -> None:
    """The service-account volume the apiserver adds (token, ca.crt, namespace), and the like."""
    ns = pod["metadata"]["namespace"]
    folder.mkdir(parents=True, exist_ok=True)
    for src in vol["projected"].get("sources") or []:
        if "serviceAccountToken" in src:
            from kubernetes import client

            req = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=[src["serviceAccountToken"]["audience"]]
                    if src["serviceAccountToken"].get("audience")
                    else [],
                    expiration_seconds=src["serviceAccountToken"].get("expirationSeconds", 3600),
                    bound_object_ref=client.V1BoundObjectReference(
                        kind="Pod", api_version="v1", name=pod["metadata"]["name"], uid=pod["metadata"]["uid"]
                    ),
                )
            )
            sa = pod["spec"].get("serviceAccountName") or "default"
            token = core.create_namespaced_service_account_token(sa, ns, req)
            (folder / src["serviceAccountToken"]["path"]).write_text(token.status.token)
        elif "configMap" in src:
            _write_keys(folder, _configmap(core, ns, src["configMap"]["name"]), src["configMap"].get("items"))
        elif "downwardAPI" in src:
            for item in src["downwardAPI"].get("items") or []:
                (folder / item["path"]).write_text(field_value(pod, item["fieldRef"]["fieldPath"]))
        else:
            raise PodSetupError(f"volume {vol['name']}: projected source {sorted(src)} is not supported")


def materialise(core: Any, pod: JSON, folder: Path) -> dict[str, JSON]:
    """Each volume of the pod → {"kind": "bind", "source": dir} or {"kind": "tmpfs"}."""
    ns = pod["metadata"]["namespace"]
    out: dict[str, JSON] = {}
    for vol in pod["spec"].get("volumes") or []:
        name, target = vol["name"], folder / vol["name"]
        if "configMap" in vol:
            _write_keys(target, _configmap(core, ns, vol["configMap"]["name"]), vol["configMap"].get("items"))
        elif "secret" in vol:
            _write_keys(target, _secret(core, ns, vol["secret"]["secretName"]), vol["secret"].get("items"))
        elif "emptyDir" in vol:
            if (vol["emptyDir"] or {}).get("medium") == "Memory":
                out[name] = {"kind": "tmpfs"}
                continue
            target.mkdir(parents=True, exist_ok=True)
        elif "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            pvc = core.read_namespaced_persistent_volume_claim(claim, ns)
            if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
                raise PodSetupError(f"volume {name}: PersistentVolumeClaim {claim} is not bound")
            pv = core.read_persistent_volume(pvc.spec.volume_name)
            if pv.spec.host_path is None:
                raise PodSetupError(
                    f"volume {name}: PersistentVolume {pv.metadata.name} is not a hostPath volume"
                )
            target = Path(pv.spec.host_path.path)
            target.mkdir(parents=True, exist_ok=True)
            give_to_fs_group(pod, target)
        elif "hostPath" in vol:
            target = Path(vol["hostPath"]["path"])
        elif "projected" in vol:
            _projected(core, pod, vol, target)
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise PodSetupError(f"volume {name}: kind {kinds} is not supported by the test kubelet")
        out[name] = {"kind": "bind", "source": str(target)}
    return out


def fs_group(pod: JSON) -> int | None:
    return ((pod["spec"].get("securityContext") or {}).get("fsGroup")) or None


def give_to_fs_group(pod: JSON, folder: Path) -> None:
    """The kubelet's volume ownership for fsGroup: the group owns the tree and may write it (setgid
    directories keep new files in the group)."""
    gid = fs_group(pod)
    if gid is None:
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, -1, gid, follow_symlinks=False)
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o2070)
        elif not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o060)


def container_mounts(container: JSON, volumes: dict[str, JSON], pod: JSON) -> list[JSON]:
    """The container's volumeMounts as bind/tmpfs mounts for testkubelet_pod.py (subPath applied)."""
    mounts = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"])
        if vol is None:
            raise PodSetupError(f"volumeMount {vm['name']}: no such volume in the pod")
        if vol["kind"] == "tmpfs":
            mounts.append({"kind": "tmpfs", "path": vm["mountPath"]})
            continue
        source = Path(vol["source"])
        if vm.get("subPath"):
            source = source / vm["subPath"]
            source.mkdir(parents=True, exist_ok=True)
            give_to_fs_group(pod, source)
        mounts.append(
            {
                "kind": "bind",
                "source": str(source),
                "path": vm["mountPath"],
                "read_only": bool(vm.get("readOnly")),
            }
        )
    return mounts
