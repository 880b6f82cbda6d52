//! Codec tests: round trips, split frames, bad input, the fuzz corpus.
