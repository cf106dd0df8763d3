"""Pieces shared by the LoVR products: crash-safe JSON Lines, video probing and frame decoding, sample videos and
the tiny random-weight models that stand in for real checkpoints offline."""
