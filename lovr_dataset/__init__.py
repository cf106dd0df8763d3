"""The LoVR `datasets` builder (configs `clips`, `videos`, `themes`), its readers for the official release, a
pipeline run folder and the Hub Parquet copy, and the export to a script-free Hub dataset."""
