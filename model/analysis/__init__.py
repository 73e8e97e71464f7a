"""Analyses computed from captured attention: per-head statistics, rollout and flow, ablation, comparison."""

from .heads import (
                    STAT_DEFINITIONS,
                    HeadScores,
                    entropy,
                    head_scores,
                    induction_score,
                    induction_targets,
                    previous_token_score,
                    uniform_weights,
)

__all__ = ["STAT_DEFINITIONS", "HeadScores", "entropy", "head_scores", "induction_score", "induction_targets",
           "previous_token_score", "uniform_weights"]
