"""The pod side of the test kubelet: PID 1 of one container, inside the pod's own namespaces.

The test kubelet (tests/e2e/testkubelet.py) starts this file as
``ip netns exec <pod netns> unshare --mount --uts --propagation private --pid --fork --kill-child --
python testkubelet_pod.py <spec.json>``, so it runs as PID 1 of a new PID namespace, in a private mount
namespace and a UTS namespace of its own (hostname: the pod's name), on the pod's network namespace. It then builds the container's root file system and
replaces itself with the container's command:

* root: an overlay whose lower layer is the image root (the host's ``/`` when the pod runs from the
  project's venv, or an unpacked image) and whose upper layer is a size-capped tmpfs, so mount points
  (``/etc/herl``, ``/checkpoints``) and writes (``/tmp/ray``) stay in the pod and vanish with it;
* ``/proc`` of the new PID namespace, ``/dev`` and ``/sys`` bound from the host, a tmpfs ``/dev/shm``;
* every volume mount bound from the folder the kubelet materialised (ConfigMap keys, emptyDir,
  the PersistentVolume's host path), read-only where the pod says so;
* ``chroot`` into it, ``chdir`` to the working directory, ``execve`` the command with the pod's env.

No host path outside the listed volumes is writable from the pod: writes land in the tmpfs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def build_root(spec: dict) -> Path:
    work = Path(spec["workdir"])
    scratch, root = work / "scratch", work / "root"
    scratch.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={spec['scratch_size']}", "tmpfs", str(scratch))
    (scratch / "upper").mkdir()
    (scratch / "work").mkdir()
    _mount(
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir={spec['lower']},upperdir={scratch / 'upper'},workdir={scratch / 'work'}",
        str(root),
    )
    for special in ("proc", "dev", "sys"):  # an image root may lack the mount points
        (root / special).mkdir(exist_ok=True)
    _mount("-t", "proc", "proc", str(root / "proc"))
    _mount("--rbind", "/dev", str(root / "dev"))
    _mount("--rbind", "/sys", str(root / "sys"))
    _mount("-t", "tmpfs", "-o", f"size={spec['shm_size']}", "tmpfs", str(root / "dev/shm"))
    for m in spec["mounts"]:
        target = root / m["path"].lstrip("/")
        if m["kind"] == "tmpfs":
            target.mkdir(parents=True, exist_ok=True)
            _mount("-t", "tmpfs", "tmpfs", str(target))
            continue
        src = Path(m["source"])
        if src.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        _mount("--bind", str(src), str(target))
        if m.get("read_only"):
            _mount("-o", "remount,bind,ro", str(target))
    return root


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"])  # our own UTS namespace: the pod's name, as in a real pod
    root = build_root(spec)
    os.chroot(root)
    os.chdir(spec.get("cwd") or "/")
    if spec.get("user"):
        # The image's USER, as a runtime applies it: after the mounts (which need root), before exec.
        uid, gid = spec["user"]
        os.setgroups(spec.get("groups") or [])  # the pod's fsGroup, as a supplementary group
        os.setgid(gid)
        os.setuid(uid)
    command = spec["argv"]
    sys.stdout.flush()
    os.execvpe(command[0], command, spec["env"])
    return 127  # pragma: no cover - execvpe does not return


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
