"""A run over many inputs: output checks, the run's store and lock, runners (this process,
worker processes, Dask), one input into its store, and publishing the timeline."""
