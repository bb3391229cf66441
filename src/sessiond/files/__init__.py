"""A session's files: git objects in the database, trees, path rules, diff, merge, commits,
git over HTTP (docs/design/workspace.md, docs/design/layout.md)."""
