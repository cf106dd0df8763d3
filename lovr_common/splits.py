"""The splits of the LoVR `clips` config, shared by the builder that writes them and the evaluation that reads them:
`QUERY_SPLIT` holds the query clips (LoVR's 1000), `OTHER_SPLIT` the rest of the gallery."""

QUERY_SPLIT = "test"
OTHER_SPLIT = "train"
