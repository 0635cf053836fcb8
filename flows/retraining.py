"""Requesting a retraining for a model and window, from any check that finds the model wanting.

With a Prefect server, a request is a `cicloml.drift.detected` event (the name the `retrain/on-drift` deployment's
trigger expects, whichever check sends it); embedded (no server to react to an event), it runs the retrain flow here.

A retraining that finds no new labelled data to learn from (labels arrive late) fits nothing and leaves the request
pending (`cicloml.retraining`); the quality check calls `reconsider_pending`, which starts it again once enough
labels have matured.

One request starts one retraining per model and window, deduplicated twice:
- here, by a mark in the state folder's ledger (`mark_once`), kept forever: reruns of a check, and a second check of
  the same window (drift, then quality once the labels arrive), send nothing more;
- at the trigger (prefect.yaml), for events that still arrive more than once (senders that share no state folder,
  re-sends): `for_each` the model and the window, the server counts each pair in a bucket of its own, starts the run
  on the first event and ignores that pair's later events for `within`. The window travels as a related resource
  because `for_each` reads resource labels, not the payload. (Prefect 3.8's run-deployment action takes no
  idempotency key of ours: each firing gets its own, so deduplicating has to happen before the action.)
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import pandas as pd
from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL

from cicloml.alerts import alert_key, mark_once
from cicloml.registry import ModelRegistry
from cicloml.retraining import (
    PendingRetraining,
    clear_pending,
    labels_since,
    matured_labels_after,
    pending_requests,
    read_regime,
)
from cicloml.settings import get_settings
from cicloml.spec import ProjectSpec
from flows.retrain import RetrainParams, retrain

RETRAIN_EVENT = "cicloml.drift.detected"
Check = Literal["drift", "skew", "quality", "follow_up"]


def request_retraining(
    model_tag: str,
    window_start: datetime,
    reason: str,
    details: Mapping[str, Any] | None = None,
    *,
    check: Check,
    in_process: bool | None = None,
    as_of: datetime | None = None,
    since: datetime | None = None,
) -> str:
    """Ask once for a retraining because `check` found `model_tag` wanting in the window starting `window_start`
    (since `since`, the degradation's onset, when the quality check knows it).

    Returns "requested" (event emitted), "ran" (`in_process`: the retrain flow ran here) or "already_requested".
    `in_process` defaults to whether no Prefect server is configured (PREFECT_API_URL unset): a temporary server
    has no deployment for the event to trigger. `as_of` (in process only) is the check's time, when it is not now.
    `reason` is shown in the retraining's Slack message; `details` (e.g. the drifted features) ride in the payload.
    """
    if not mark_once(get_settings().alerts_dir, f"retrain-request:{alert_key(model_tag, window_start)}"):
        return "already_requested"
    return _start(
        model_tag, window_start, reason, details, check=check, in_process=in_process, as_of=as_of, since=since
    )


def follow_up(
    spec: ProjectSpec, labels: pd.DataFrame, known_by: datetime, *, in_process: bool | None = None
) -> str | None:
    """Ask for a follow-up retraining when the champion learned the world since an onset from few of its labels
    and they have grown (`cicloml.retraining.Regime.follow_up`); return why, or None."""
    settings = get_settings()
    champion = ModelRegistry(settings, spec.name).champion()
    regime = read_regime(settings.state_dir, spec.name)
    if champion is None or regime is None or regime.model_tag != champion:
        return None
    count, newest = labels_since(labels, spec.labels, onset=regime.onset, known_by=known_by)
    reason = regime.follow_up(count, newest, spec)
    if reason is not None:
        request_retraining(
            champion, regime.onset, reason, check="follow_up", in_process=in_process, as_of=known_by, since=regime.onset
        )
    return reason


def reconsider_pending(
    spec: ProjectSpec, labels: pd.DataFrame, known_by: datetime, *, in_process: bool | None = None
) -> list[PendingRetraining]:
    """Start again every waiting request of `spec`'s model for which at least `retraining.min_new_labels` labels
    newer than the champion's training data are known by `known_by`; return those started. A request waits for the
    current champion's cutoff (a champion promoted since may have learnt from those labels already)."""
    settings = get_settings()
    registry = ModelRegistry(settings, spec.name)
    champion = registry.champion()
    if champion is None:
        return []
    cutoff = registry.lineage(champion).test_window[1]
    waiting = pending_requests(settings.state_dir, spec.name)
    if not waiting:
        return []
    matured = matured_labels_after(labels, spec.labels, after=cutoff, known_by=known_by)
    if matured < spec.retraining.min_new_labels:
        return []
    for request in waiting:
        clear_pending(settings.state_dir, request)
        reason = f"{request.reason} (waited since {request.requested_at:%Y-%m-%d %H:%M} UTC; {matured} labels newer "
        reason += f"than {champion}'s data have matured)"
        _start(
            request.model_tag,
            request.window_start,
            reason,
            {"pending_since": request.requested_at.isoformat()},
            check=request.check,
            in_process=in_process,
            as_of=known_by,
            attempt="labels-matured",
            since=request.since,
        )
    return waiting


def _start(
    model_tag: str,
    window_start: datetime,
    reason: str,
    details: Mapping[str, Any] | None,
    *,
    check: str,
    in_process: bool | None,
    as_of: datetime | None,
    attempt: str | None = None,
    since: datetime | None = None,
) -> str:
    if PREFECT_API_URL.value() is None if in_process is None else in_process:
        params = RetrainParams(
            reason=reason, as_of=as_of, model_tag=model_tag, window_start=window_start, check=check, since=since
        )
        retrain(params)
        return "ran"
    window = window_start.isoformat()
    # The trigger starts one run per model and window for a week; a second attempt (the labels a deferred request
    # waited for have matured) is a window resource of its own, so the trigger does not take it for a re-send.
    window_id = f"cicloml.window.{window}" + (f".{attempt}" if attempt else "")
    emit_event(
        event=RETRAIN_EVENT,
        resource={"prefect.resource.id": f"cicloml.model.{model_tag}", "prefect.resource.name": model_tag},
        related=[{"prefect.resource.id": window_id, "prefect.resource.role": "window"}],
        payload={
            "reason": reason,
            "check": check,
            "model_tag": model_tag,
            "window_start": window,
            "since": since.isoformat() if since else "",
            "details": dict(details or {}),
        },
    )
    return "requested"
