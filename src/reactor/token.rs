//! A token is a slab key and a generation in one `usize`: an event still
//! queued for a closed handler names the old generation, and is dropped
//! instead of reaching the new handler that reuses the key.

use mio::Token;

/// Low bits of a token: the slab key. High bits: the generation.
pub(super) const KEY_BITS: u32 = usize::BITS / 2;
pub(super) const KEY_MASK: usize = (1 << KEY_BITS) - 1;

pub(super) fn make_token(key: usize, generation: usize) -> Token {
    Token((generation << KEY_BITS) | (key & KEY_MASK))
}

pub(super) fn key_of(token: Token) -> usize {
    token.0 & KEY_MASK
}

pub(super) fn generation_of(token: Token) -> usize {
    token.0 >> KEY_BITS
}
