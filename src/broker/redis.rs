//! The Redis broker actor (being written).
