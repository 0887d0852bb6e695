"""What a server may do besides answering a call: call back (``callbacks``: sampling,
elicitation declined), run a call as a task (``tasks``), and report progress and notes to the
caller (``notes``)."""
