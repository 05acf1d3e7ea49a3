"""The reserved token ids that every vocabulary, task and decoder of recurrax agrees on.

``<pad>`` is 0 so that zero-filled arrays are padding; ``<unk>`` stands for any token outside a
vocabulary; a decoder starts from ``<sos>`` and a hypothesis ends at ``<eos>``.
"""

PAD = 0
UNK = 1
SOS = 2
EOS = 3

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
SOS_TOKEN = "<sos>"
EOS_TOKEN = "<eos>"

SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, SOS_TOKEN, EOS_TOKEN)
"""The specials in id order: ``SPECIAL_TOKENS[i]`` has id ``i``."""
