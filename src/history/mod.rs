//! Chat history (being written).
