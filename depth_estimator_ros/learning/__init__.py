"""learning layer; see docs/ARCHITECTURE.md."""
