"""BentoML services (`@bentoml.service` classes), their schemas and middleware, and the bento build."""
