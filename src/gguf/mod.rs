//! GGUF container: filled in by the gguf work.
