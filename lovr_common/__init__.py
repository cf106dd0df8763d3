"""Pieces shared by the LoVR products: the run folder in code (`run_folder`), crash-safe JSON Lines, video probing
and frame decoding, the dataset's split names, model-source checks, the random-weights provenance check and the
processes of a launch (`processes`). The stand-ins (tiny models, sample videos) live in `lovr_standins`."""
