"""Point-in-time features: the training frame and its manifest (:mod:`.build`), the model's view of
a frame (:mod:`.frame`), and the same features online, from the snapshot (:mod:`.online`)."""
