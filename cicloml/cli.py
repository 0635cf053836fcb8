"""`cicloml` (or `python -m cicloml`): look at the registry and move the champion by hand.

cicloml models list              every version with its gate outcome, metrics and lineage; * marks the champion
cicloml models show TAG          one version in full (JSON)
cicloml models promote TAG       make TAG the champion (a version the gate rejected needs --force)
cicloml models rollback          restore the previous champion
cicloml init --feast-repo PATH   write a project spec for an existing Feast repository, then check it
cicloml apply                    register the Feast repository's definitions (what changed, or nothing)
cicloml check                    check settings, the spec, the Feast repo, the feature service and the labels
cicloml serve                    serve the champion's bento behind a local proxy; switch to each new champion
                                 with no failed request (SIGHUP: check the champion now)
cicloml backtest                 replay weeks of a seeded world under each retraining policy (JSON, PNG, HTML)
cicloml report                   write a model's health page over its last windows (HTML) and print its path
cicloml stack up|down|status     the local stack (`make up` / `make down`): Prefect server and UI, work pool and
                                 worker, every deployment, and `cicloml serve`
"""

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from cicloml.atomic import atomic_path
from cicloml.backtest import DEFAULT_POLICIES, POLICIES, BacktestWorld, default_timeline, parse_timeline, run_backtest
from cicloml.backtest_report import summary_markdown, write_backtest_report
from cicloml.errors import ConfigError
from cicloml.health import history_path
from cicloml.health_report import DEFAULT_WINDOWS, write_health_page
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

    init = commands.add_parser(
        "init",
        help="write a project spec for an existing Feast repository, then check it",
        description="Write a project spec (to CICLO_SPEC_PATH, default ./cicloml.yaml) for a Feast repository: its "
        "feature service and entities, the label file's label and time columns, and features whose Feast type a "
        "model cannot read (excluded). Every guess is shown with its reason; edit the file to correct one. Then "
        "runs `cicloml check`.",
    )
    init.add_argument("--feast-repo", type=Path, required=True, help="the folder that holds feature_store.yaml")
    init.add_argument("--feature-service", help="the feature service to train on (default: the only one)")
    init.add_argument("--labels", type=Path, help="a Parquet file of labels: entity keys, a time, a 0/1 label")
    init.add_argument("--force", action="store_true", help="overwrite an existing spec")
    init.set_defaults(run=_init)

    apply = commands.add_parser(
        "apply",
        help="register the Feast repository's definitions, like `feast apply`, only when something changed",
        description="Register the definitions of the Feast repository the spec names (features.repo): entities, "
        "sources, feature views, on-demand views and feature services are created, updated or deleted to match "
        "the files. Nothing is written when nothing changed.",
    )
    apply.set_defaults(run=_apply)

    check = commands.add_parser(
        "check",
        help="check settings, the spec, the Feast repo, the feature service and the labels, without doing any work",
        description="Report every problem at once, each with its fix: the spec, the Feast repository (applied? "
        "online store and registry where cicloml expects them?), the feature service (on-demand views, Feast "
        "types, join keys) and the label table (columns, duplicates, a binary label). Exit status 1 on errors.",
    )
    check.set_defaults(run=_check)

    serve = commands.add_parser(
        "serve",
        help="serve the champion's bento on HOST:PORT; switch to each new champion with no failed request",
        description="Serve the champion's bento (built if needed) behind a local proxy on HOST:PORT. When the "
        "champion changes, the new bento starts beside the old one and takes the traffic once ready; the old one "
        "finishes its requests and stops. A bento that dies or hangs is restarted (503 with Retry-After "
        "meanwhile); <state>/serve/serving.json says what is served and how it fares. Runs until SIGINT/SIGTERM; "
        "SIGHUP checks the champion at once.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=3000, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--workers",
        type=int,
        # Two where there are the cores: BentoML restarts a crashed worker while the other keeps answering.
        default=2 if (os.cpu_count() or 1) >= 2 else 1,
        help="BentoML workers per bento (default: %(default)s, two where the machine has two cores)",
    )
    serve.add_argument(
        "--poll-seconds", type=float, default=5.0, help="how often to check the champion (default: %(default)s)"
    )
    serve.add_argument("--access-log", action="store_true", help="log every request (default: errors and events only)")
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

    backtest = commands.add_parser(
        "backtest",
        help="replay weeks of a seeded world in simulated time and compare retraining policies",
        description="Replay a seeded churn world day by day, in process and in simulated time, through the same "
        "training, gate, drift, estimate, quality-check, incident and retraining code as production, under each "
        "policy: never (train once), weekly, every_drift (retrain on every drifted day), cicloml (the spec's "
        "evidence rules), oracle (weekly, as if labels had no delay), cicloml_weekly. The spec's model, training, "
        "gates, drift, quality, alerts and retraining sections are what it tries. Writes backtest.json, "
        "backtest.png and backtest.html, prints the summary per policy. Deterministic for a seed.",
    )
    backtest.add_argument("--weeks", type=int, default=16, help="simulated weeks (default 16)")
    backtest.add_argument(
        "--customers",
        type=int,
        default=BacktestWorld.model_fields["customers"].default,
        help="customers, each scored daily (default %(default)s)",
    )
    backtest.add_argument("--seed", type=int, default=7, help="the world's seed (default 7)")
    backtest.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        help=f"comma-separated, among {', '.join(POLICIES)} (default {','.join(DEFAULT_POLICIES)})",
    )
    backtest.add_argument(
        "--timeline",
        help="FIRST-END:SCENARIO entries in days, comma-separated, END empty for the world's end (default "
        "28-56:price_rise,56-:competitor_offer,78-80:broken_payment_feed; '' for a stable world)",
    )
    backtest.add_argument(
        "--out", type=Path, help="the folder for the report (default <state folder>/reports/backtest/<world>)"
    )
    backtest.set_defaults(run=_backtest)

    report = commands.add_parser(
        "report",
        help="write a model's health page over its last windows and print its path",
        description="Write one self-contained HTML page of a model's last windows, as the drift and quality checks "
        "recorded them: which version served each, a heatmap of every feature's drift score, the score "
        "distribution's drift, estimated ROC AUC (with its interval) beside the realized one once labels arrive, "
        "alerts, retraining decisions with their reasons, promotions. The checks rewrite it after each run, at "
        "<state folder>/reports/health/<model>.html.",
    )
    report.add_argument("--model", help="the model's name (default: the project spec's)")
    report.add_argument(
        "--windows", type=int, default=DEFAULT_WINDOWS, help="how many of the newest windows (default %(default)s)"
    )
    report.add_argument(
        "--out", type=Path, help="where to write it (default <state folder>/reports/health/<model>.html)"
    )
    report.set_defaults(run=_report)

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


def _init(args: argparse.Namespace) -> int:
    from cicloml.feature_store import open_store  # Feast is slow to import; only these commands need it
    from cicloml.scaffold import draft_spec

    settings = get_settings()
    target = settings.spec_path
    if target.exists() and not args.force:
        raise ConfigError(f"{target} exists; pass --force to overwrite it (or set CICLO_SPEC_PATH to another file)")
    store = open_store(args.feast_repo, settings)
    draft = draft_spec(store, target.parent, feature_service=args.feature_service, labels=args.labels)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        temporary.write_text(draft.yaml())
    print(f"wrote {target}:\n")
    print(draft.yaml())
    print("guessed:\n" + "\n".join(f"  {reason}" for reason in draft.reasons) + "\n")
    return _check(args)


def _apply(args: argparse.Namespace) -> int:
    from cicloml.feature_store import apply_repo, open_store

    settings = get_settings()
    spec = load_spec(settings.spec_path)
    report = apply_repo(open_store(spec.features.repo, settings))
    for change in report.changed:
        print(change)
    print(
        f"{len(report.changed)} change(s) applied from {spec.features.repo}"
        if report.changed
        else f"no changes: the registry matches {spec.features.repo}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from cicloml.preflight import check_project

    report = check_project(get_settings())
    print(report.text())
    return 0 if report.passed else 1


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


def _backtest(args: argparse.Namespace) -> int:
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    policies = [name.strip() for name in args.policies.split(",") if name.strip()]
    unknown = [name for name in policies if name not in POLICIES]
    if unknown or not policies:
        raise ConfigError(
            f"--policies: unknown {', '.join(unknown) or '(none given)'}; choose among {', '.join(POLICIES)}"
        )
    try:
        timeline = default_timeline() if args.timeline is None else parse_timeline(args.timeline)
        world = BacktestWorld(weeks=args.weeks, customers=args.customers, seed=args.seed, timeline=timeline)
    except ValidationError as error:  # one line per problem, named by its option
        problems = (
            f"--{problem['loc'][0] if problem['loc'] else 'timeline'}: {problem['msg']}" for problem in error.errors()
        )
        raise ConfigError("; ".join(problems)) from None
    except ValueError as error:
        raise ConfigError(f"--timeline: {error}") from None
    result = run_backtest(spec, world, policies, progress=lambda line: print(line, file=sys.stderr, flush=True))
    paths = write_backtest_report(result, args.out or settings.reports_dir / "backtest" / world.name)
    print(summary_markdown(result))
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.windows < 1:
        raise ConfigError(f"--windows must be at least 1 (got {args.windows})")
    settings = get_settings()
    model = args.model or load_spec(settings.spec_path).name
    try:
        if not history_path(settings.state_dir, model).exists() and not ModelRegistry(settings, model).versions():
            known = sorted(path.stem for path in (settings.state_dir / "history").glob("*.json"))
            raise ConfigError(
                f"--model {model}: no checks recorded and no versions registered under that name in "
                f"{settings.state_dir}; models with a history: {', '.join(known) or 'none yet'}"
            )
        path = write_health_page(settings, model, windows=args.windows, out=args.out)
    except ValueError as error:  # a model name that cannot name a file
        raise ConfigError(str(error)) from None
    print(path)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    from cicloml.serving import serve_champion  # imports BentoML and uvicorn; only this command needs them

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.access_log:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per proxied request otherwise
    settings = get_settings()
    serve_champion(
        settings,
        _registry(),
        host=args.host,
        port=args.port,
        workers=args.workers,
        poll_s=args.poll_seconds,
        access_log=args.access_log,
    )
    return 0
