"""Who is who: face embeddings per track (`embedder`, `collect`) and the clustering of
tracks into people (`cluster`), on arrays only."""
