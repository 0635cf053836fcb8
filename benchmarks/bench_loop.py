"""The whole loop replayed (`cicloml.backtest`) under each retraining policy, over many seeds; one JSON object.

Each seed is the default world (16 weeks, 2,000 customers: stable for four weeks, prices rise in week 5, a
competitor's offer from week 9 on, the payment feed broken for two days of week 12) replayed under never, weekly,
cicloml and oracle with cicloml.yaml's rules. The baselines run in the same replay as cicloml, on the same traffic and
labels, so every target is a difference or a ratio within one run. every_drift is left out by default (`--policies`
adds it; `make backtest` shows it): no target concerns it, and retraining on every drifted day it fits ~50 models a
seed, more than the other four policies together.

- cicloml's mean live ROC AUC ≥ weekly's − 0.005, with ≤ 1/3 of its training runs;
- after the concept drift starts: ≥ never's + 0.03;
- from the label delay + 7 days after it: within 0.02 of oracle's (mean over those days);
- no promotion of a model trained on the champion's data (every policy but every_drift and never);
- ≤ 1 opening alert per incident (a timeline entry: the world changing), and no alert in ≥ 95% of the stable
  seed-weeks (weeks before the first entry);
- estimated vs realized ROC AUC: mean absolute error ≤ 0.02 over the days outside the concept drift. Beside it, the
  part of that error no estimate can remove: the realized ROC AUC's own sampling error on the day's labels (Hanley and
  McNeil's standard error × √(2/π), the mean absolute deviation of a normal). It is why the world has 2,000 customers:
  with 1,000 (~190 churners a day) it is ~0.019 alone, at the target's edge.

Seeds run in parallel processes (one per core), each with one native thread (`run_backtest(threads=1)`).

    python benchmarks/bench_loop.py [--seeds 20] [--processes 2] [--weeks 16] [--customers 2000]
                                    [--policies never,weekly,cicloml,oracle]

Progress goes to stderr.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from cicloml.backtest import DEFAULT_POLICIES, BacktestResult, BacktestWorld, PolicyResult, run_backtest
from cicloml.demo.churn import LABEL_DELAY
from cicloml.estimation import roc_auc_standard_error
from cicloml.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
CONCEPT = "competitor_offer"
NORMAL_MEAN_DEVIATION = math.sqrt(2 / math.pi)


def replay(seed: int, weeks: int, customers: int, policies: Sequence[str]) -> dict[str, Any]:
    """One seed's numbers per policy (computed in the worker: the results themselves stay there)."""
    started = time.perf_counter()
    world = BacktestWorld(seed=seed, weeks=weeks, customers=customers)
    result = run_backtest(load_spec(ROOT / "cicloml.yaml"), world, policies)
    return {
        "seed": seed,
        "seconds": time.perf_counter() - started,
        "policies": {policy.policy.name: measure(result, policy) for policy in result.policies},
    }


def measure(result: BacktestResult, policy: PolicyResult) -> dict[str, Any]:
    world, days = result.world, policy.days
    concept = min((first for first, _, scenario in world.timeline if scenario == CONCEPT), default=None)
    stable_until = min((first for first, _, _ in world.timeline), default=world.days)

    def mean_from(first: int | None) -> float | None:
        values = [row.realized_roc_auc for row in days if first is not None and row.day >= first]
        known = [value for value in values if value is not None]
        return statistics.fmean(known) if known else None

    openings = [
        sum(row.alert for row in days if first <= row.day < (end if end is not None else world.days))
        for first, end, _ in world.timeline
    ]
    stable_weeks = [days[week * 7 : week * 7 + 7] for week in range(stable_until // 7)]
    judged = [
        row
        for row in days
        if row.estimated_roc_auc is not None and row.realized_roc_auc is not None and CONCEPT not in row.scenario
    ]
    errors = [abs(row.estimated_roc_auc - row.realized_roc_auc) for row in judged]
    noise = [roc_auc_standard_error(row.realized_roc_auc, *row.labelled) * NORMAL_MEAN_DEVIATION for row in judged]
    summary = policy.summary
    return {
        "mean_roc_auc": summary.mean_roc_auc,
        "after_concept_roc_auc": mean_from(concept),
        "after_label_delay_roc_auc": mean_from(None if concept is None else concept + LABEL_DELAY.days + 7),
        "training_runs": summary.training_runs,
        "promotions": summary.promotions,
        "promotions_same_data": summary.promotions_same_data,
        "alerts": summary.alerts,
        "drifted_days": summary.drifted_days,
        "openings_per_incident": openings,
        "stable_weeks": len(stable_weeks),
        "stable_weeks_alerting": sum(any(row.alert for row in week) for week in stable_weeks),
        "estimate_errors": errors,
        "realized_noise": noise,
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    policies: dict[str, Any] = {}
    for name in runs[0]["policies"]:
        seeds = [run["policies"][name] for run in runs]

        def mean(key: str, seeds: list[dict[str, Any]] = seeds) -> float | None:
            values = [seed[key] for seed in seeds if seed[key] is not None]
            return round(statistics.fmean(values), 4) if values else None

        openings = [count for seed in seeds for count in seed["openings_per_incident"]]
        errors = [error for seed in seeds for error in seed["estimate_errors"]]
        noise = [error for seed in seeds for error in seed["realized_noise"]]
        stable = sum(seed["stable_weeks"] for seed in seeds)
        policies[name] = {
            "mean_roc_auc": mean("mean_roc_auc"),
            "after_concept_roc_auc": mean("after_concept_roc_auc"),
            "after_label_delay_roc_auc": mean("after_label_delay_roc_auc"),
            "training_runs": mean("training_runs"),
            "promotions": mean("promotions"),
            "promotions_same_data": sum(seed["promotions_same_data"] for seed in seeds),
            "alerts": mean("alerts"),
            "drifted_days": mean("drifted_days"),
            "openings_per_incident": {"max": max(openings, default=0), "mean": _round(openings)},
            "stable_seed_weeks_without_alert": round(1 - sum(s["stable_weeks_alerting"] for s in seeds) / stable, 4)
            if stable
            else None,
            "estimate_mae_outside_concept": _round(errors),
            "realized_sampling_mae_outside_concept": _round(noise),
        }
    return policies


def targets(policies: dict[str, Any]) -> dict[str, Any]:
    ours, weekly, never, oracle = (policies[name] for name in ("cicloml", "weekly", "never", "oracle"))

    def target(value: float, rule: str, met: bool) -> dict[str, Any]:
        return {"value": round(value, 4), "target": rule, "met": met}

    difference = ours["mean_roc_auc"] - weekly["mean_roc_auc"]
    ratio = ours["training_runs"] / weekly["training_runs"]
    gain = ours["after_concept_roc_auc"] - never["after_concept_roc_auc"]
    gap = oracle["after_label_delay_roc_auc"] - ours["after_label_delay_roc_auc"]
    same_data = sum(policies[name]["promotions_same_data"] for name in policies if name not in ("every_drift", "never"))
    openings = ours["openings_per_incident"]["max"]
    quiet = ours["stable_seed_weeks_without_alert"]
    mae = ours["estimate_mae_outside_concept"]
    return {
        "cicloml_minus_weekly_mean_roc_auc": target(difference, ">= -0.005", difference >= -0.005),
        "cicloml_over_weekly_training_runs": target(ratio, "<= 0.333", ratio <= 1 / 3),
        "cicloml_minus_never_after_concept": target(gain, ">= 0.03", gain >= 0.03),
        "oracle_minus_cicloml_after_label_delay_plus_7d": target(gap, "<= 0.02", gap <= 0.02),
        "same_data_promotions": target(same_data, "== 0 (all but every_drift, never)", same_data == 0),
        "cicloml_max_openings_per_incident": target(openings, "<= 1", openings <= 1),
        "cicloml_stable_seed_weeks_without_alert": target(quiet, ">= 0.95", quiet >= 0.95),
        "cicloml_estimate_mae_outside_concept": target(mae, "<= 0.02", mae <= 0.02),
    }


def _round(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20, help="worlds to replay (default 20: seeds 1 to 20)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="parallel replays (default: cores)")
    parser.add_argument("--weeks", type=int, default=16)
    parser.add_argument("--customers", type=int, default=BacktestWorld.model_fields["customers"].default)
    parser.add_argument(
        "--policies",
        type=lambda value: value.split(","),
        default=[name for name in DEFAULT_POLICIES if name != "every_drift"],
        help="comma-separated (default: never,weekly,cicloml,oracle; the targets need these four)",
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=args.processes) as pool:
        futures = [
            pool.submit(replay, seed, args.weeks, args.customers, args.policies) for seed in range(1, args.seeds + 1)
        ]
        for future in as_completed(futures):
            runs.append(future.result())
            print(f"seed {runs[-1]['seed']}: {runs[-1]['seconds']:.0f} s ({len(runs)}/{args.seeds})", file=sys.stderr)
    runs.sort(key=lambda run: run["seed"])
    policies = aggregate(runs)
    seconds = [run["seconds"] for run in runs]
    output = {
        "benchmark": "loop",
        "world": BacktestWorld(weeks=args.weeks, customers=args.customers).model_dump(mode="json", exclude={"seed"}),
        "seeds": args.seeds,
        "processes": args.processes,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "seconds_per_seed": {"mean": round(statistics.fmean(seconds), 1), "max": round(max(seconds), 1)},
        "policies": policies,
        "targets": targets(policies),
    }
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
