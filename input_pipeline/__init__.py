"""tf.data input pipelines: sources (tfds, image folders, idx/npz files) and batching."""
