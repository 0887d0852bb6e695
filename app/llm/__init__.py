"""Model access through litellm; nothing outside this package imports litellm."""
