//! Block formats: filled in by the formats work.
