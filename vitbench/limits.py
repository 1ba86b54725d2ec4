"""Bounds on values read from the command line and from YAML, checked before anything is allocated from them.

Each bound is far beyond any real use and far below what would exhaust memory: a value past one is a typo (an
eps written as 8 instead of 8/255, a size with extra zeros) or a hostile file, and is refused with one line.
"""

from __future__ import annotations

import math

#: pixels lie in [0, 1]: an L-inf eps above 1 allows every image
MAX_LINF_EPS = 1.0
#: side of a model's input (and of the resize before its center crop), in pixels
MAX_INPUT_SIZE = 4096
#: the L2 distance between two images in [0, 1]^(3 x S x S) is at most sqrt(3) * S
MAX_L2_EPS = math.sqrt(3) * MAX_INPUT_SIZE
#: logits of a classifier (ImageNet-21k has 21,843 classes)
MAX_NUM_CLASSES = 100_000
#: YAML nodes that aliases (``*name``) may add to a document when expanded (a "billion laughs" file adds 10^9)
MAX_YAML_ALIAS_NODES = 10_000
