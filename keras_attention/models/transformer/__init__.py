"""The transformer parts of timm's token networks (VOLO): model parts, not catalogue mechanisms.

Tokens are `(batch, N, C)` (or `(batch, H, W, C)` for the position
embedding); the layers equal timm's modules with the same weights.
"""

from keras_attention.models.transformer.class_attention import ClassAttention
from keras_attention.models.transformer.class_token import ClassToken
from keras_attention.models.transformer.multi_head_self_attention import MultiHeadSelfAttention
from keras_attention.models.transformer.position_embedding import PositionEmbedding
