"""Finding faces: MTCNN's networks (`nets`) and how they run (`runtimes`), the cascade and its
box geometry (`cascade`, `crops` on a GPU), the stage (`detector`) and a video's detection
schedule (`video`)."""
