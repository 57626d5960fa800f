"""SAIE: Support Alone Isn't Enough -- a reproducible study of learner/partner discussion training.

Importing the package is cheap: heavy dependencies (torch, transformers) load only inside the
functions that need them.
"""

__version__ = "0.1.0"
