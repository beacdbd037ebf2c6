"""The end-to-end jobs (convert, compression, slim, lengths) and what they share."""
