"""reid_eval package."""
