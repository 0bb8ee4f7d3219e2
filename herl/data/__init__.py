"""Training data: source-format converters (HIR-16K, RaR-Medicine) and the prompt loader.

Importing this package is cheap; pyarrow loads only when a file is read or written.
"""

from herl.data.loaders import FORMATS, load_prompts

__all__ = ["FORMATS", "load_prompts"]
