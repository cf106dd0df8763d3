"""Dataset, metric and model cards for LoVR, filled from the data and results, and publishing to the Hub."""
