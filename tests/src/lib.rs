//! The conformance suite (added with the actix issue).
