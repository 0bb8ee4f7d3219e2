"""Loading the released IFEval and IFBench checker registries, offline and without their heavy parents.

Two upstream packages ship the checkers we reuse as-is (so verdicts match the published evaluators):

- IFEval: ``lm_eval/tasks/ifeval/instructions_registry.py`` in lm-eval 0.4.13 (Google's checkers, 25 ids).
- IFBench: ``if_verifiable/ifbench/instructions_registry.py`` in if-verifiable 0.1.2 (AllenAI's, 58 ids).

Why the import machinery below: both registries live under a package whose ``__init__`` is expensive or
harmful for us. ``lm_eval.tasks.__init__`` imports the TaskManager (datasets, YAML configs; ~1.8 s and a
lot of memory in every reward worker), and ``if_verifiable.__init__`` imports ``datasets`` through its
API module. The checker modules themselves only need ``nltk``/``langdetect``/``emoji``/``syllapy``, but
they import each other by absolute name (``from lm_eval.tasks.ifeval import instructions``), so the
parent package must exist in ``sys.modules``. We therefore place a *bare* package object (a module with
the right ``__path__`` whose ``__init__`` is never executed) under the parent's name for the duration of
the import, then remove it again, so a later ordinary ``import lm_eval.tasks`` elsewhere in the process
still runs the real ``__init__``. If the real parent is already imported we simply use it.

NLTK: ``NLTK_DATA`` must point at :func:`herl.assets.nltk_data_dir` *before* ``nltk`` is first imported
(``nltk.data.path`` is computed at import). Both upstream util modules call ``nltk.download`` at import
when a resource is missing (IFBench asks for ``punkt`` and ``averaged_perceptron_tagger_eng``, which we
cannot obtain offline). We never let that reach the network: while the registries load, ``nltk.download``
is replaced by a recorder that returns False, and the resources it was asked for are kept in
:data:`MISSING_NLTK_RESOURCES`. ``punkt`` itself is not needed: nltk >= 3.9 serves the punkt sentence
tokenizer from ``punkt_tab``, which we ship.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

IFEVAL_PARENT = "lm_eval.tasks"
IFEVAL_REGISTRY = "lm_eval.tasks.ifeval.instructions_registry"
IFBENCH_PARENT = "if_verifiable"
IFBENCH_REGISTRY = "if_verifiable.ifbench.instructions_registry"

# IFBench's words:start_verb needs this NLTK resource, which no offline source ships.
NEEDS_POS_TAGGER = "taggers/averaged_perceptron_tagger_eng"
UNSUPPORTED_NOTE = (
    "unsupported: needs POS tagger (NLTK averaged_perceptron_tagger_eng is not available offline)"
)

MISSING_NLTK_RESOURCES: set[str] = set()

_lock = threading.Lock()
_registries: dict[str, dict[str, Any]] = {}
_langdetect_lock = threading.Lock()
_langdetect_loaded = False


def configure_nltk() -> str:
    """Point NLTK at our offline data before anything imports it; returns the directory used.

    ``HERL_NLTK_DATA`` overrides the asset cache (tests, air-gapped images with a baked path). If nltk
    was already imported by someone else, the directory is also prepended to ``nltk.data.path``.
    """
    from herl import assets

    data_dir = os.environ.get("HERL_NLTK_DATA") or str(assets.nltk_data_dir())
    current = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if data_dir not in current:
        os.environ["NLTK_DATA"] = os.pathsep.join([data_dir, *current])
    if "nltk" in sys.modules:
        nltk_data = sys.modules["nltk"].data
        if data_dir not in nltk_data.path:
            nltk_data.path.insert(0, data_dir)
    return data_dir


@contextmanager
def _no_nltk_download() -> Iterator[None]:
    """Replace ``nltk.download`` by a recorder for the duration of the upstream imports."""
    import nltk

    original: Callable[..., Any] = nltk.download

    def _refuse(info_or_id: Any = None, *args: Any, **kwargs: Any) -> bool:
        MISSING_NLTK_RESOURCES.add(str(info_or_id))
        return False

    nltk.download = _refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        nltk.download = original  # type: ignore[assignment]


@contextmanager
def _bare_parent(parent: str) -> Iterator[None]:
    """Make ``parent`` importable as a package without executing its ``__init__`` (see module doc)."""
    if parent in sys.modules:
        yield
        return
    head, _, tail = parent.rpartition(".")
    if head:
        importlib.import_module(head)  # lm_eval/__init__ is light (version lookup only)
        spec = importlib.util.find_spec(head)
        assert spec is not None and spec.submodule_search_locations is not None
        location = os.path.join(next(iter(spec.submodule_search_locations)), tail)
    else:
        spec = importlib.util.find_spec(parent)
        if spec is None or spec.submodule_search_locations is None:
            raise ModuleNotFoundError(f"package {parent!r} is not installed", name=parent)
        location = next(iter(spec.submodule_search_locations))
    bare_spec = importlib.machinery.ModuleSpec(parent, None, is_package=True)
    bare_spec.submodule_search_locations = [location]
    module = importlib.util.module_from_spec(bare_spec)
    module.__path__ = [location]
    sys.modules[parent] = module
    try:
        yield
    finally:
        if sys.modules.get(parent) is module:
            del sys.modules[parent]
        if head and getattr(sys.modules.get(head), tail, None) is module:
            delattr(sys.modules[head], tail)


def import_isolated(parent: str, module_name: str) -> ModuleType:
    """Import ``module_name`` (under ``parent``) offline, without running ``parent``'s ``__init__``."""
    configure_nltk()
    with _no_nltk_download(), _bare_parent(parent):
        return importlib.import_module(module_name)


def _load(parent: str, registry_module: str) -> dict[str, Any]:
    module = import_isolated(parent, registry_module)
    langdetect_ready()
    return dict(module.INSTRUCTION_DICT)


def langdetect_ready() -> None:
    """Seed langdetect and load its language profiles, once per process, before any detection.

    langdetect samples internally; a fixed seed makes every verdict reproducible across processes
    (needed for parallel == serial and for agreement with the reference evaluator). It also builds its
    profile table lazily on the first ``detect``, without a lock: a second thread detecting meanwhile
    uses a half-built table and calls plain English text another language (measured: 1 of 16 lowercase
    English answers passed instead of 16 in half of fresh processes). The veRL reward function scores
    in threads, so the table is built here, under a lock, before any checker runs.
    """
    global _langdetect_loaded
    if _langdetect_loaded:
        return
    with _langdetect_lock:
        if not _langdetect_loaded:
            import langdetect
            from langdetect import detector_factory

            langdetect.DetectorFactory.seed = 0
            detector_factory.init_factory()
            _langdetect_loaded = True


def ifeval_registry() -> dict[str, Any]:
    """IFEval checker classes by id (lm-eval 0.4.13's copy of Google's registry), loaded once."""
    with _lock:
        if "ifeval" not in _registries:
            _registries["ifeval"] = _load(IFEVAL_PARENT, IFEVAL_REGISTRY)
        return _registries["ifeval"]


def ifbench_registry() -> dict[str, Any]:
    """IFBench checker classes by id (if-verifiable 0.1.2), loaded once."""
    with _lock:
        if "ifbench" not in _registries:
            _registries["ifbench"] = _load(IFBENCH_PARENT, IFBENCH_REGISTRY)
        return _registries["ifbench"]


def pos_tagger_available() -> bool:
    """Whether NLTK's English POS tagger is on disk (then ``words:start_verb`` runs for real)."""
    configure_nltk()
    import nltk

    try:
        nltk.data.find(NEEDS_POS_TAGGER)
    except LookupError:
        return False
    return True


def warm_up() -> None:
    """Load everything a worker needs so its first item is fast.

    Beyond the imports, langdetect reads its language profiles and NLTK its punkt parameters lazily on
    first use (~0.5 s together); we trigger both here.
    """
    ifeval_registry()
    ifbench_registry()
    pos_tagger_available()
    import langdetect

    langdetect.detect("This sentence is written in plain English.")
    util = sys.modules["lm_eval.tasks.ifeval.instructions_util"]
    util.count_sentences("One sentence. Another one.")
