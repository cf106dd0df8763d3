"""`make demo`: the LoVR toolkit end to end on the bundled sample, offline. Grown by each product as it lands."""
