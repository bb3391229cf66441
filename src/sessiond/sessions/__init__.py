"""Sessions: the unit of work, its lifecycle, tags, context and listing."""
