"""The math and the facts every part shares: ``attention()``, masks and why a cell is masked, record names,
pooled overviews, per-row statistics, interventions, token encodings and array helpers."""
