"""A video's faces over time: track ids (`tracker`), which tracked faces the classifier sees
(`classify_schedule`) and the smoothing of their probabilities (`smoother`)."""
