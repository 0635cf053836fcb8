"""`cicloml serve` follows the champion pointer: what it does between switches, in process (no bento started)."""

import asyncio

from cicloml.serving import ChampionServer
from cicloml.settings import Settings
from tests.conftest import ROOT


class Registry:
    def __init__(self, champion: str) -> None:
        self._champion = champion

    def champion(self) -> str:
        return self._champion


def test_a_sighup_during_a_failed_switch_asks_again(settings: Settings) -> None:
    """The retrain flow SIGHUPs once its bento is built, which can be while the server's own attempt fails: that
    request must lead to another attempt now, not wait for the pointer to move again."""
    server = ChampionServer(settings, Registry("churn:v2"), ROOT, poll_s=60)  # type: ignore[arg-type]
    attempts: list[str] = []

    async def switch_to(model_tag: str) -> None:
        attempts.append(model_tag)
        if len(attempts) == 1:
            server._failed = model_tag  # this attempt fails...
            server.check_now()  # ...while a SIGHUP arrives

    server.switch_to = switch_to  # type: ignore[method-assign]

    async def run() -> None:
        stop = asyncio.Event()
        follower = asyncio.create_task(server._follow_champion(stop))
        await asyncio.sleep(0.3)
        stop.set()
        server.check_now()
        await follower

    asyncio.run(run())
    # Retried once at the SIGHUP; not again afterwards, until the pointer moves or another SIGHUP asks.
    assert attempts == ["churn:v2", "churn:v2"]
