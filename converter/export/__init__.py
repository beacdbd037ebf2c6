"""Files out: TFLite conversion, file statistics, the bundle writer."""
