//! The top-level error.
