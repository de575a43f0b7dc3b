//! The HTTP backend actor (being written).
