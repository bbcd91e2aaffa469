//! Replay of recorded samples.
