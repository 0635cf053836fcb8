"""The Kubernetes example in prefect.yaml, as the README tells a user to apply it: create a `kubernetes` work pool,
point the `work_pool` alias at the Kubernetes definition, and `prefect deploy --all` with the image named.

No cluster runs here, so the test stops where Prefect's part ends: a real server holds every deployment on the
Kubernetes pool with the image and environment a pod would get, and the pool's job template takes them.
"""

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.operations.deployments import call, declared_deployments, deployment
from tests.prefect_server import local_prefect_server

pytestmark = pytest.mark.slow

IMAGE = "registry.example.com/cicloml-flows:1.2.3"
LOCAL_ALIAS, KUBERNETES_ALIAS = "<<: *local_pool", "<<: *kubernetes_pool"


def test_the_kubernetes_example_deploys_every_flow_to_a_kubernetes_pool(tmp_path: Path) -> None:
    project = (ROOT / "prefect.yaml").read_text()
    assert project.count(LOCAL_ALIAS) == 1, "the README's switch is one alias in prefect.yaml"
    kubernetes_file = tmp_path / "prefect.yaml"
    kubernetes_file.write_text(project.replace(LOCAL_ALIAS, KUBERNETES_ALIAS))

    with local_prefect_server(tmp_path / "prefect") as server:
        server.cli("work-pool", "create", "cicloml-kubernetes", "--type", "kubernetes")
        server.env.update({"CICLO_FLOWS_IMAGE": IMAGE, "CICLO_REDIS_URL": "redis.cicloml:6379"})
        server.cli("deploy", "--all", "--prefect-file", str(kubernetes_file))

        pool = call("GET", f"{server.api_url}/work_pools/cicloml-kubernetes")
        assert pool["type"] == "kubernetes"
        template_variables = pool["base_job_template"]["variables"]["properties"]
        for full_name in declared_deployments():
            found = deployment(server.api_url, full_name)
            assert found["work_pool_name"] == "cicloml-kubernetes", full_name
            variables = found["job_variables"]
            assert variables["image"] == IMAGE, full_name
            # The pod starts in the image's copy of the project, on the shared state folder and Redis.
            assert variables["env"]["CICLO_PROJECT_DIR"] == "/opt/cicloml", full_name
            assert variables["env"]["CICLO_ONLINE_STORE"] == "redis", full_name
            assert variables["env"]["CICLO_REDIS_URL"] == "redis.cicloml:6379", full_name
            assert set(variables) <= set(template_variables), full_name
