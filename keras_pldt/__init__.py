"""keras-pldt: Pixel-Level Domain Transfer (Yoo et al., ECCV 2016) in Keras 3."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
