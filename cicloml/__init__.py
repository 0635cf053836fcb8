"""cicloml: the ML lifecycle loop — features, training, serving, monitoring — as plain, typed functions.

The library never imports Prefect; `flows/` wraps these functions into Prefect flows and `bentos/` into
BentoML services.
"""

__version__ = "0.1.0"
