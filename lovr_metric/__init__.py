"""LoVR retrieval evaluation: the metric maths (pure torch, no `evaluate` import), the `evaluate` module
`lovr_retrieval`, and the encoders that turn transformers / sentence-transformers models into embeddings."""
