"""adaptation layer; see docs/ARCHITECTURE.md."""
