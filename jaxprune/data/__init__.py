"""Datasets: TFDS ArrayRecord sources read with grain, plus offline data."""
from jaxprune.data.pipeline import (NAMES, SPECS, DatasetSpec, eval_batches,
                                    get_spec, host_batch_size, load_source,
                                    normalize, split_source, steps_per_epoch,
                                    train_batches)
