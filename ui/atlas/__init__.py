"""The Atlas page: open an atlas database and read a corpus's statistics per head (app_pages/atlas.py draws it)."""
