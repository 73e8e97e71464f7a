"""The Streamlit side of the app: widget state, cached models and traced calls, the sidebar, and one module per
view. Numbers come from model/ (the trace and model.analysis), figures from viz/; this package only lays them out."""
