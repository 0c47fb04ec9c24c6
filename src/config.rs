//! Configuration: the file, the environment, validation.
