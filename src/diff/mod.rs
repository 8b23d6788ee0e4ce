//! Reversible line patches between two versions of a text file.
