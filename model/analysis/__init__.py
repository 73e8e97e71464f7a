"""Analyses computed from captured attention: per-head statistics, rollout and flow, ablation, comparison."""

from .ablation import AblationEffect, effect_of, rank_heads
from .compare import Alignment, align_tokens, head_js_distances, js_distance_rows, restrict
from .heads import (
                    STAT_DEFINITIONS,
                    HeadScores,
                    alignment_score,
                    entropy,
                    head_scores,
                    induction_score,
                    induction_targets,
                    previous_token_score,
                    uniform_weights,
)
from .rollout import (
                    HEAD_FUSIONS,
                    flow,
                    flow_matrix_affordable,
                    flow_row_affordable,
                    fuse_heads,
                    residual_attention,
                    rollout,
                    source_attribution,
)

__all__ = ["HEAD_FUSIONS", "STAT_DEFINITIONS", "AblationEffect", "Alignment", "HeadScores", "align_tokens",
           "alignment_score",
           "effect_of", "entropy", "flow", "flow_matrix_affordable", "flow_row_affordable", "fuse_heads",
           "head_js_distances", "head_scores", "induction_score", "induction_targets", "js_distance_rows",
           "previous_token_score", "rank_heads", "residual_attention", "restrict", "rollout", "source_attribution",
           "uniform_weights"]
