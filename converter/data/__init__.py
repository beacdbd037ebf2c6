"""Sentences in: Financial PhraseBank and table loaders, host tokenization, augmentation."""
