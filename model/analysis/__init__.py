"""Analyses computed from captured attention: per-head statistics, rollout and flow, ablation, comparison, and why the
model does it: knockouts, the logit lens and head patching; per-token norms (high-norm tokens, registers)."""

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
from .knockout import SELECTIONS, KnockoutEffect, knockout_effect, knockout_spec, parse_pairs, select_cells
from .lens import LogitLens, logit_lens
from .needle import needle_table, span_mass
from .patching import (
                    Metric,
                    PatchingError,
                    PatchingResult,
                    PositionPatching,
                    check_alignment,
                    default_positions,
                    metric_for,
                    patch_heads,
                    patch_positions,
                    rerun,
                    run_corrupt,
                    token_id,
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
from .tokens import TokenNorms, token_norms

__all__ = ["HEAD_FUSIONS", "SELECTIONS", "STAT_DEFINITIONS", "AblationEffect", "Alignment", "HeadScores",
           "KnockoutEffect", "LogitLens", "Metric", "PatchingError", "PatchingResult", "PositionPatching",
           "align_tokens", "alignment_score", "check_alignment", "default_positions", "effect_of", "entropy", "flow",
           "flow_matrix_affordable", "flow_row_affordable", "fuse_heads", "head_js_distances", "head_scores",
           "induction_score", "induction_targets", "js_distance_rows", "knockout_effect", "knockout_spec",
           "logit_lens", "metric_for", "needle_table", "parse_pairs", "patch_heads", "patch_positions",
           "previous_token_score", "rank_heads", "rerun", "residual_attention", "restrict", "rollout",
           "run_corrupt", "select_cells", "source_attribution", "span_mass", "token_id", "token_norms",
           "uniform_weights", "TokenNorms"]
