"""`cicloml` (or `python -m cicloml`): look at the registry and move the champion by hand.

cicloml models list              every version with its gate outcome, metrics and lineage; * marks the champion
cicloml models show TAG          one version in full (JSON)
cicloml models promote TAG       make TAG the champion (a version the gate rejected needs --force)
cicloml models rollback          restore the previous champion
cicloml check                    validate settings, the project spec and the Feast repo, then exit
cicloml serve                    serve the champion's bento behind a local proxy; switch to each new champion
                                 with no failed request (SIGHUP: check the champion now)
cicloml stack up|down|status     the local stack (`make up` / `make down`): Prefect server and UI, work pool and
                                 worker, every deployment, and `cicloml serve`
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cicloml.errors import ConfigError
from cicloml.registry import ModelRegistry, ModelVersion
from cicloml.settings import get_settings
from cicloml.spec import load_spec


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ConfigError, LookupError) as error:
        print(f"cicloml: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cicloml",
        description="Inspect the model registry and move the champion pointer. Settings come from CICLO_* "
        "variables (state folder: CICLO_STATE_DIR, default .ciclo); the model name from the project spec.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate settings, the project spec and the Feast repo")
    check.set_defaults(run=_check)

    serve = commands.add_parser(
        "serve",
        help="serve the champion's bento on HOST:PORT; switch to each new champion with no failed request",
        description="Serve the champion's bento (built if needed) behind a local proxy on HOST:PORT. When the "
        "champion changes, the new bento starts beside the old one and takes the traffic once ready; the old one "
        "finishes its requests and stops. Runs until SIGINT/SIGTERM; SIGHUP checks the champion at once.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=3000, help="port to listen on (default: %(default)s)")
    serve.add_argument("--workers", type=int, default=1, help="BentoML workers per bento (default: %(default)s)")
    serve.add_argument(
        "--poll-seconds", type=float, default=5.0, help="how often to check the champion (default: %(default)s)"
    )
    serve.set_defaults(run=_serve)

    stack = commands.add_parser(
        "stack",
        help="start, stop or show the local stack: Prefect server, worker, deployments, model server",
        description="The local stack behind `make up` / `make down`: a Prefect server (UI and API on "
        "127.0.0.1:CICLO_PREFECT_PORT, database CICLO_PREFECT_DATABASE_URL or SQLite), a process worker for each "
        "work pool in prefect.yaml, every deployment in it, and `cicloml serve` on 127.0.0.1:CICLO_SERVE_PORT. "
        "PIDs and logs are kept under <state folder>/stack.",
    )
    stack_actions = stack.add_subparsers(required=True, metavar="ACTION")
    stack_actions.add_parser(
        "up", help="start everything and wait until it is healthy (says so if already up)"
    ).set_defaults(run=_stack_up)
    stack_actions.add_parser("down", help="stop exactly what `up` started").set_defaults(run=_stack_down)
    stack_actions.add_parser("status", help="what `up` started, and whether it still runs").set_defaults(
        run=_stack_status
    )

    models = commands.add_parser("models", help="model versions and the champion")
    actions = models.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every version, oldest first; * marks the champion")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=_list)
    show = actions.add_parser("show", help="one version in full, as JSON")
    show.add_argument("tag", help="name:version, e.g. churn:abc123 (see `models list`)")
    show.set_defaults(run=_show)
    promote = actions.add_parser("promote", help="make a version the champion")
    promote.add_argument("tag")
    promote.add_argument("--force", action="store_true", help="promote even though the gate rejected it")
    promote.set_defaults(run=_promote)
    rollback = actions.add_parser("rollback", help="restore the previous champion")
    rollback.set_defaults(run=_rollback)
    return parser


def _registry() -> ModelRegistry:
    settings = get_settings()
    return ModelRegistry(settings, load_spec(settings.spec_path).name)


def _check(args: argparse.Namespace) -> int:
    from cicloml.feature_store import feature_schema, open_store  # Feast is slow to import; only this needs it

    settings = get_settings()
    spec = load_spec(settings.spec_path)
    schema = feature_schema(open_store(spec.features.repo, settings), spec.features.feature_service)
    print(f"ok: spec {settings.spec_path}, state {settings.state_dir}, online store {settings.online_store}")
    print(f"ok: {spec.features.feature_service} serves {len(schema.features)} features keyed by {schema.entity_keys}")
    return 0


def _list(args: argparse.Namespace) -> int:
    versions = _registry().versions()
    if args.json:
        print(json.dumps([version.model_dump(mode="json") for version in versions], indent=2))
        return 0
    if not versions:
        print("no model versions yet (run the train flow)")
        return 0
    print(f"  {'tag':<28} {'created':<17} {'gate':<9} {'family':<10} {'roc_auc':>8} {'pr_auc':>7}  service")
    for version in versions:
        print(_row(version))
    return 0


def _row(version: ModelVersion) -> str:
    lineage = version.lineage
    auc, pr_auc = (_number(lineage.metrics.get(name)) for name in ("roc_auc", "pr_auc"))
    return (
        f"{'*' if version.champion else ' '} {version.tag:<28} {version.created:%Y-%m-%d %H:%M}  "
        f"{version.labels.get('gate', '?'):<9} {lineage.family:<10} {auc:>8} {pr_auc:>7}  {lineage.feature_service}"
    )


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _show(args: argparse.Namespace) -> int:
    registry = _registry()
    versions = {version.tag: version for version in registry.versions()}
    if args.tag not in versions:
        raise LookupError(f"no model version {args.tag!r}; known: {', '.join(versions) or 'none'}")
    print(versions[args.tag].model_dump_json(indent=2))
    return 0


def _promote(args: argparse.Namespace) -> int:
    registry = _registry()
    gate = registry.label(args.tag).get("gate")
    if gate == "rejected" and not args.force:
        print(f"cicloml: the gate rejected {args.tag}; pass --force to promote it anyway", file=sys.stderr)
        return 1
    registry.promote(args.tag)
    print(f"champion: {args.tag}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    print(f"champion: {_registry().rollback()}")
    return 0


def _stack_up(args: argparse.Namespace) -> int:
    from cicloml import stack

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        status = stack.up(get_settings(), Path.cwd(), say)
    except stack.StackError as error:
        print(f"cicloml: the stack did not start, and what had started is stopped again: {error}", file=sys.stderr)
        return 1
    assert status.stack is not None
    print(("already up:\n" if status.already_up else "") + status.stack.summary())
    print("stop it with `make down`")
    return 0


def _stack_down(args: argparse.Namespace) -> int:
    from cicloml import stack

    stopped = stack.down(get_settings())
    for process in stopped:
        print(f"stopped {process.name} (pid {process.pid})")
    if not stopped:
        print("nothing to stop: the stack is not up")
    return 0


def _stack_status(args: argparse.Namespace) -> int:
    from cicloml import stack

    status = stack.stack_status(get_settings())
    if status.stack is None:
        print("the stack is not up (start it with `make up`)")
        return 3
    print(status.stack.summary())
    if status.dead:
        print(f"stopped since: {', '.join(status.dead)} (see their logs; `make down`, then `make up`)")
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    from cicloml.serving import serve_champion  # imports BentoML and uvicorn; only this command needs them

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    serve_champion(
        settings,
        _registry(),
        settings.spec_path.parent,
        host=args.host,
        port=args.port,
        workers=args.workers,
        poll_s=args.poll_seconds,
    )
    return 0
