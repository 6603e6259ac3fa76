"""Training side of bdinn: network, reference operator, data and trainer (these need torch), and
the degradations, clean pictures, pairs and evaluation (degrade, clean_sources, pairs_cache,
image_pair, evaluate), which do not:
bdinn-eval runs without torch."""
