"""Session export and import (docs/design/export.md): one file in, one new session out."""
