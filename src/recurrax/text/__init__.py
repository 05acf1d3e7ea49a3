"""Text for sequence models: normalisation, tokenizers, vocabularies, batching and the metrics of
generated text (BLEU, ROUGE, token accuracy, exact match, perplexity).

The pipeline, one step per module::

    text --normalize--> text --tokenizer--> tokens --Vocab.encode--> ids --bucket_batches--> arrays

Hugging Face ``tokenizers`` (for :class:`BPETokenizer`) is optional and imported only when a BPE is
trained or loaded, and NLTK's Porter stemmer only when ROUGE stems: ``pip install 'recurrax[text]'``.
The metric modules are ``bleu``, ``rouge`` and ``scores``; no function shares their names.
"""

from recurrax.text.batching import (
    bucket_batches,
    bucket_for,
    bucket_indices,
    pad_sequences,
    trace_counter,
)
from recurrax.text.bleu import BLEUScore, corpus_bleu, sentence_bleu, tokenize_13a
from recurrax.text.normalize import normalize
from recurrax.text.rouge import (
    RougeScore,
    corpus_rouge,
    rouge_per_pair,
    rouge_tokenize,
    sentence_rouge,
)
from recurrax.text.scores import (
    PerplexitySums,
    bits_per_token,
    exact_match,
    exact_match_counts,
    nll_sums,
    perplexity,
    token_accuracy,
    token_accuracy_counts,
)
from recurrax.text.special_tokens import EOS, PAD, SOS, UNK
from recurrax.text.tokenizers import (
    BPETokenizer,
    FunctionTokenizer,
    Tokenizer,
    bpe_tokenizer,
    char_tokenizer,
    word_tokenizer,
)
from recurrax.text.vocab import Vocab

__all__ = [
    "EOS",
    "PAD",
    "SOS",
    "UNK",
    "BLEUScore",
    "BPETokenizer",
    "FunctionTokenizer",
    "PerplexitySums",
    "RougeScore",
    "Tokenizer",
    "Vocab",
    "bits_per_token",
    "bpe_tokenizer",
    "bucket_batches",
    "bucket_for",
    "bucket_indices",
    "char_tokenizer",
    "corpus_bleu",
    "corpus_rouge",
    "exact_match",
    "exact_match_counts",
    "nll_sums",
    "normalize",
    "pad_sequences",
    "perplexity",
    "rouge_per_pair",
    "rouge_tokenize",
    "sentence_bleu",
    "sentence_rouge",
    "token_accuracy",
    "token_accuracy_counts",
    "tokenize_13a",
    "trace_counter",
    "word_tokenizer",
]
