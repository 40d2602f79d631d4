"""ros layer; see docs/ARCHITECTURE.md."""
