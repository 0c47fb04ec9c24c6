//! Logging through tracing-subscriber.
