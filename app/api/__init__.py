"""The wire formats: parse requests into a RunRequest, render run events as JSON or SSE."""
