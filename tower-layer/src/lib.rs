//! Placeholder: this adapter is built under its own issue.
