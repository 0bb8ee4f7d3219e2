"""The HeRLJob operator (``herl.dev/v1alpha1`` → KubeRay ``ray.io/v1`` RayJobs).

Layout (flat on purpose): pure builders (:mod:`.builders`) and the status mapper (:mod:`.status`) hold
all decisions and are unit-tested without a cluster; :mod:`.reconcile` is the thin, idempotent loop
that reads, calls them and applies the result through :mod:`.kube`; :mod:`.handlers` wires it to kopf.
Importing this package does not import kopf.
"""

FIELD_MANAGER = "herl-operator"
