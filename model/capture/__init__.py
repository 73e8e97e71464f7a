"""Recording one call: the per-call recorder, full and lazy traces, what an attention received (kept for lazy
recomputation), the passes over it, and a record as a DataFrame."""
