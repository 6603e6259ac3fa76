"""Training side of bdinn: network, reference operator, data and trainer (needs torch)."""
