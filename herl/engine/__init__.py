"""The local engine: the same HeRLJob, trained end to end on one machine (CPU or one GPU).

OpenMP threads that spin while waiting make torch's CPU kernels several times slower as soon as another
process competes for the cores (measured: a SmolLM2-135M step took 188 s with 2 spinning threads next to
one busy process, 31 s with passive waiting). The wait policy is read when torch loads, so it is set
here, before any engine module imports torch; a value the user exported wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
