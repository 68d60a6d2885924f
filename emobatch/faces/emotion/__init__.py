"""Reading an emotion off an aligned face: architectures (`models`), weights with their config
(`weights`), how the network runs (`runtimes`), input normalisation (`preprocess`) and the
stage (`classifier`)."""
