"""Session summaries: produced on close (in the background) and on demand."""
