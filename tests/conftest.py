"""Suite-wide settings.

Subprocesses started by tests (``python -m herl.cli …``) run with the repo root as their working
directory; PYTHONSAFEPATH keeps that directory off sys.path so the repo's ``operator/`` folder (imported
as ``herl_operator``) cannot shadow the standard library's ``operator`` module.
"""

import os

os.environ["PYTHONSAFEPATH"] = "1"
