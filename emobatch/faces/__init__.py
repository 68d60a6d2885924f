"""Faces in an image, one room per job: `detection/` (MTCNN), `emotion/` (the classifier),
`tracking/` (a video's faces over time); shared by them: alignment (`align`), the device and
its precision (`device`), box overlap (`boxes`), thread-invariant CPU layers
(`invariant_layers`) and per-video state as JSON (`state_json`)."""
