//! Search over the books RedCloud stores.
//!
//! For now this holds only [`gutenberg`]: turning a Project Gutenberg
//! plain-text file into its metadata and the book's own text, ready to index.

pub mod gutenberg;
pub mod index;
