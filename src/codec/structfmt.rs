//! Python `struct` format strings: parse, encode, decode, repr.
