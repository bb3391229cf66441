"""Tasks: the session's todo list / agent plan."""
