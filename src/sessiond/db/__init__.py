"""Storage: tables, engines, the database executor and migrations."""
