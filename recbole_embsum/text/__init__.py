"""Item text for content models: the text store and the language-model backbone, usable by any model.

* :mod:`.items`: reading ``<dataset>.text.jsonl``, item templates, token caps, one-time tokenised item (and summary)
  rows as padded tables.
* :mod:`.backbone`: the tokenizers trained on the item text (``plm_init: scratch``, one special-token scheme per
  model family) and their cache, and loading a PLM (``plm``: a Hugging Face name or local path): EmbSum's T5
  (``load_backbone``) and any encoder or encoder-decoder (``load_plm``).
* :mod:`.words`: the word-level tokenizer trained on the item text (cached by corpus and settings) and word vectors
  (random, GloVe text, or .npy) for the models trained from scratch.
* :mod:`.features`: word, category and entity id tables per item for those models.

Nothing here knows about a recommender model; models import from here.
"""
