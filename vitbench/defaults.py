"""The defaults of an evaluation, in one torch-free place: the engine, the Python API and the CLI read them here."""

#: examples per stored chunk (part of the evaluation key)
CHUNK_SIZE = 100
#: the largest batch an evaluation starts with (halved on out-of-memory)
BATCH_SIZE = 256
#: the interval of accuracies (``wilson`` or ``clopper-pearson``)
INTERVAL = "wilson"
#: bootstrap resamples for the intervals of the other metrics (0: none)
RESAMPLES = 1000
