"""The image page: an image model's attention over its picture (app_pages/images.py draws it from here)."""
