"""herl: Kubernetes-native training for HeRL (hindsight-experience RL for LLMs).

Layers (see docs/architecture.md): ``herl.api`` (the HeRLJob spec), ``herl.core`` (the algorithm,
backend-neutral), ``herl.rewards`` / ``herl.data``, the engines (``herl.verl_plugin`` for veRL 0.9.1
on a cluster, ``herl.engine`` on one machine), ``herl.metrics`` and the CLI. The operator lives in
``herl_operator`` (source folder ``operator/``).
"""

__version__ = "0.1.0"
