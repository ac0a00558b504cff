"""The results of runs: `store` owns ``results/<profile>/<run>/`` (layout, writing, reading);
`tables` and `summary` turn what it reads into the book's tables and sentences. Keras-free."""
