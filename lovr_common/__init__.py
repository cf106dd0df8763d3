"""Pieces shared by the LoVR products: crash-safe JSON Lines, video probing and frame decoding, model-source checks
and the random-weights provenance check. The stand-ins (tiny models, sample videos) live in `lovr_standins`."""
