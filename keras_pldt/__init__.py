"""keras-pldt: Pixel-Level Domain Transfer (Yoo et al., ECCV 2016) in Keras 3.

Importing the package changes nothing in the process: the command-line entry points quiet
TensorFlow's C++ log in their own `main` (`keras_pldt.cli.quiet_tensorflow`).
"""

__version__ = "0.1.0"
