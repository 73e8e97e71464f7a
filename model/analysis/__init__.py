"""Analyses computed from captured attention: per-head statistics, rollout and flow, ablation, comparison."""

from .ablation import AblationEffect, HiddenEffect, effect_of, hidden_effect_of, rank_heads, rank_heads_by_hidden
from .compare import Alignment, align_tokens, head_js_distances, js_distance_rows, restrict, similarity_to_reference
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
                    most_focused_row,
                    residual_attention,
                    rollout,
                    source_attribution,
)

__all__ = ["HEAD_FUSIONS", "STAT_DEFINITIONS", "AblationEffect", "Alignment", "HeadScores", "HiddenEffect",
           "align_tokens", "hidden_effect_of", "rank_heads_by_hidden",
           "alignment_score",
           "effect_of", "entropy", "flow", "flow_matrix_affordable", "flow_row_affordable", "fuse_heads",
           "head_js_distances", "head_scores", "induction_score", "induction_targets", "js_distance_rows",
           "most_focused_row",
           "previous_token_score", "rank_heads", "residual_attention", "restrict", "rollout", "similarity_to_reference",
           "source_attribution",
           "uniform_weights"]
