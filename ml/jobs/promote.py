"""Move each model's ``champion`` alias when its challenger wins on the holdout."""

from __future__ import annotations

from ml.jobs.evaluate import VersionEvaluation


def promote_versions(evaluations: dict[str, VersionEvaluation]) -> dict[str, object]:
    """Apply the promotion rule (beat the reference and the champion) to every evaluated version."""
    from ml import registry

    decisions = {}
    for name, ev in evaluations.items():
        c = ev.challenger
        decisions[name] = registry.promote(
            name,
            ev.version,
            metric=c.primary_metric,
            challenger=c.primary,
            reference=c.reference_primary,
            champion=ev.champion_score,
            higher_is_better=c.higher_is_better,
        )
    return decisions


__all__ = ["promote_versions"]
