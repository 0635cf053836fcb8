"""Prefect flows: thin tables of contents over `cicloml` functions, deployed by prefect.yaml."""
