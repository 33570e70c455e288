"""Reading and validating post records."""
