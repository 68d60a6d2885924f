"""Faces in an image: detection (MTCNN), alignment, the emotion classifier and how its
networks run, and the per-video stages (detection schedule, tracking, smoothing)."""
