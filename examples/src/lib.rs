//! Runnable examples live in `src/bin/` (added with the adapter issues).
