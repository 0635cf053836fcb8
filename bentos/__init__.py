"""BentoML services (`@bentoml.service` classes), their schemas and middleware, and the bento build.

Importing the package limits the numeric libraries to one thread each (unless the environment says otherwise),
before the service module loads sklearn or torch: a request scores a handful of rows, and their thread pools only
add contention there (OpenMP threads busy-wait between HistGradientBoosting's per-tree loops, several times the
work itself). A service gets its throughput from BentoML workers instead.
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
