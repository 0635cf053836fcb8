"""Requesting a retraining for a model and window, from any check that finds the model wanting.

With a Prefect server, a request is a `cicloml.drift.detected` event (the name the `retrain/on-drift` deployment's
trigger expects, whichever check sends it); embedded (no server to react to an event), it runs the retrain flow here.

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

from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL

from cicloml.alerts import alert_key, mark_once
from cicloml.settings import get_settings
from flows.retrain import RetrainParams, retrain

RETRAIN_EVENT = "cicloml.drift.detected"
Check = Literal["drift", "skew", "quality"]


def request_retraining(
    model_tag: str,
    window_start: datetime,
    reason: str,
    details: Mapping[str, Any] | None = None,
    *,
    check: Check,
    in_process: bool | None = None,
) -> str:
    """Ask once for a retraining because `check` found `model_tag` wanting in the window starting `window_start`.

    Returns "requested" (event emitted), "ran" (`in_process`: the retrain flow ran here) or "already_requested".
    `in_process` defaults to whether no Prefect server is configured (PREFECT_API_URL unset): a temporary server
    has no deployment for the event to trigger.
    `reason` is shown in the retraining's Slack message; `details` (e.g. the drifted features) ride in the payload.
    """
    if not mark_once(get_settings().alerts_dir, f"retrain-request:{alert_key(model_tag, window_start)}"):
        return "already_requested"
    if PREFECT_API_URL.value() is None if in_process is None else in_process:
        retrain(RetrainParams(reason=reason))
        return "ran"
    window = window_start.isoformat()
    emit_event(
        event=RETRAIN_EVENT,
        resource={"prefect.resource.id": f"cicloml.model.{model_tag}", "prefect.resource.name": model_tag},
        related=[{"prefect.resource.id": f"cicloml.window.{window}", "prefect.resource.role": "window"}],
        payload={"reason": reason, "check": check, "window_start": window, "details": dict(details or {})},
    )
    return "requested"
