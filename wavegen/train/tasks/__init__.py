"""Training objectives: each task says what to optimise and how to validate."""
