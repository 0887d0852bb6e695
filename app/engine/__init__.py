"""The tool loop: one async generator of typed events, shared by every endpoint."""
