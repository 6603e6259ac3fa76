"""Training side of bdinn: network, reference operator, data and trainer (these need torch), and
the degradations, picture pairs and evaluation (degrade, image_pair, evaluate), which do not:
bdinn-eval runs without torch."""
