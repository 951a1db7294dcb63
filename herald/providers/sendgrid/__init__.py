"""sendgrid: see herald/providers/__init__.py for the layout."""
