"""The promotion gate: a challenger becomes champion only if it clears the floors and is not worse than the
champion on the same test window."""

from pydantic import BaseModel

from cicloml.evaluation import Metrics
from cicloml.spec import GatesSpec


class GateDecision(BaseModel):
    promote: bool
    reasons: list[str]
    """Why, one line per rule checked (passed or failed)."""
    challenger: Metrics
    champion: Metrics | None
    champion_tag: str | None

    @property
    def label(self) -> str:
        return "passed" if self.promote else "rejected"

    def markdown(self, challenger_tag: str) -> str:
        """Champion vs challenger, for people."""
        verdict = "**promoted** to champion" if self.promote else "**rejected**; it stays in the registry, unserved"
        lines = [f"Challenger `{challenger_tag}` {verdict}.", ""]
        lines += ["| metric | challenger | champion |", "|---|---:|---:|"]
        for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "f1"):
            ours, theirs = getattr(self.challenger, metric), getattr(self.champion, metric, None)
            lines.append(f"| {metric} | {_number(ours)} | {_number(theirs)} |")
        champion = f"`{self.champion_tag}`" if self.champion_tag else "none yet"
        lines += ["", f"Champion: {champion}", "", *[f"- {reason}" for reason in self.reasons]]
        return "\n".join(lines)


def decide_promotion(
    challenger: Metrics, champion: Metrics | None, gates: GatesSpec, *, champion_tag: str | None = None
) -> GateDecision:
    """Floors from the spec always apply; with a champion (scored on the same rows), the challenger's ROC AUC may
    be at most `gates.max_regression` below the champion's. With no champion yet, the floors alone decide."""
    failures: list[str] = []
    passes: list[str] = []

    def rule(ok: bool, text: str) -> None:
        (passes if ok else failures).append(("ok: " if ok else "failed: ") + text)

    auc, pr_auc = challenger.roc_auc or 0.0, challenger.pr_auc or 0.0
    rule(auc >= gates.min_roc_auc, f"ROC AUC {auc:.4f} vs floor {gates.min_roc_auc:.4f}")
    rule(pr_auc >= gates.min_pr_auc, f"PR AUC {pr_auc:.4f} vs floor {gates.min_pr_auc:.4f}")
    if champion is None:
        passes.append("ok: no champion yet, the floors decide")
    else:
        bar = (champion.roc_auc or 0.0) - gates.max_regression
        rule(
            auc >= bar,
            f"ROC AUC {auc:.4f} vs champion {champion_tag} {champion.roc_auc or 0.0:.4f} "
            f"(tolerance {gates.max_regression:.4f})",
        )
    return GateDecision(
        promote=not failures,
        reasons=failures + passes,
        challenger=challenger,
        champion=champion,
        champion_tag=champion_tag,
    )


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
